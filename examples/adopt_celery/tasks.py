"""The team's tasks (unchanged by the migration)."""

from celery import shared_task

from adopt_celery.app import app


@app.task
def send_receipt(order_id: int, email: str) -> dict:
    return {"order": order_id, "to": email, "sent": True}


@app.task(bind=True, autoretry_for=(ConnectionError,), max_retries=3, default_retry_delay=1)
def send_invoice(self, order_id: int) -> str:
    if self.request.retries == 0:
        raise ConnectionError("mail server busy")  # the first attempt fails; autoretry runs it again
    return f"invoice-{order_id}.pdf"


@shared_task
def order_total(prices: list[float]) -> float:
    return round(sum(prices), 2)
