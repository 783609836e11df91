"""The team's existing Celery app and tasks, with the two lines that hand them to the coordinator."""

from __future__ import annotations

import os

from celery import Celery

from coordinator import JobQueueCoordinator

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

app = Celery("shop", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"])

# The coordinator adopts the app: same broker, JSON only, its settings added (acks late, priorities).
coord = JobQueueCoordinator.from_env(app=app)
EMAILS = "emails"


@app.task(queue=coord.celery_queue(EMAILS))
def send_receipt(order_id: int, email: str) -> dict:
    """An ordinary Celery task, routed to the coordinator's "emails" queue."""
    return {"order": order_id, "to": email, "sent": True}


@app.task(queue=coord.celery_queue(EMAILS), bind=True, max_retries=3)
def send_invoice(self, order_id: int) -> str:  # noqa: ANN001 (Celery's bound task)
    return f"invoice-{order_id}.pdf"
