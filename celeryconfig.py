"""The coordinator's Celery settings, as a Celery config module.

The coordinator loads this module with ``app.config_from_object`` (every process: the managing
one, managed workers, beat, Flower, the CLI; ``CELERY_CONFIG_MODULE`` names another one).
Edit it as a Celery team would. A safe override here is honoured (``worker_prefetch_multiplier``,
``result_expires``, ``worker_max_tasks_per_child``, extra ``broker_transport_options``, ...); one
that would lose jobs or run untrusted content is refused at start with the reason (pickle,
``task_acks_late = False``, ``broker_url``, ``visibility_timeout`` here: see docs/celeryconfig.md).

The defaults below live in `coordinator.celery_config`, so this file and the library cannot
drift apart; a team's own app can use them too (``app.config_from_object("celeryconfig")``).
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
