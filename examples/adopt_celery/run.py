"""Run the adopted app: a managed worker for the "emails" queue runs the team's own tasks.

    cd examples && python -m adopt_celery.run
"""

from __future__ import annotations

from adopt_celery.shop import EMAILS, coord, send_invoice, send_receipt


def main() -> None:
    coord.create_queue(EMAILS)
    # No processor: the worker runs the adopted app's own @app.task tasks sent to this queue.
    worker = coord.register_worker(EMAILS, concurrency=1)
    print(f"worker {worker.id} consuming {coord.celery_queue(EMAILS)}", flush=True)
    try:
        receipt = send_receipt.delay(42, "ada@example.com")
        invoice = send_invoice.delay(42)
        print("receipt:", receipt.get(timeout=30), flush=True)
        print("invoice:", invoice.get(timeout=30), flush=True)
        receipt.forget()  # results read: remove them from the result backend
        invoice.forget()
    finally:
        coord.delete_queue(EMAILS)
        coord.shutdown()


if __name__ == "__main__":
    main()
