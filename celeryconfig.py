"""The Celery defaults the coordinator starts from, as a Celery config module.

Point a team's own app at it (``app.config_from_object("celeryconfig")``) to run with the same
settings the coordinator uses: JSON only, task events on, prefetch 1, acks late with
re-delivery on worker loss, and strict priorities on the Redis transport. The values live in
`coordinator.celery_config`, so this file and the library cannot drift apart.
"""

from coordinator.celery_config import (  # noqa: F401  (Celery reads these names)
    accept_content,
    broker_connection_retry_on_startup,
    broker_transport_options,
    enable_utc,
    event_serializer,
    result_accept_content,
    result_serializer,
    task_acks_late,
    task_reject_on_worker_lost,
    task_send_sent_event,
    task_serializer,
    timezone,
    worker_prefetch_multiplier,
    worker_send_task_events,
)
