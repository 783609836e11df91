"""Celery task events for the jobs of an async worker, so Flower sees each job's real outcome.

A sync job's Celery task returns, retries or raises with the job's outcome (`task.celery_outcome`),
and Celery's own request sends the matching event. An async job's outcome comes later, on the
event loop: the Celery task that handed the job over (RabbitMQ) raises ``Ignore`` (no outcome
event of its own), and a job the loop took itself (Redis broker) never had a Celery request at
all. `TaskEvents` sends what Celery's request would have sent: ``task-received`` and
``task-started`` for the jobs the loop took, and ``task-succeeded`` / ``task-failed`` /
``task-retried`` / ``task-revoked`` with the outcome, under the same task id (``<job id>.<token>``)
and name (the job's, Celery's ``shadow``) as a sync job's events.

Only while the worker's own event dispatcher sends task events (``-E``, `Settings.task_events`,
or Flower's ``enable_events`` broadcast), and never on the loop: a thread sends them over a
connection of its own (kombu connections are not shared between threads).
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import Executor
from typing import Any

from celery.utils.saferepr import saferepr

from coordinator.dispatch import task_id
from coordinator.models import Job

log = logging.getLogger(__name__)

#: Longest ``args`` of a ``task-received`` event: as the broker message's ``argsrepr``.
ARGS_MAX = 256


class TaskEvents:
    """Sends the Celery task events of async jobs from ``thread`` (see the module docstring)."""

    def __init__(self, thread: Executor) -> None:
        self._thread = thread
        self._consumer: Any = None
        self._dispatcher: Any = None

    def attach(self, consumer: Any) -> None:
        """The worker's Celery consumer (``worker_ready``'s sender): its dispatcher says whether
        task events are on now, and its app and hostname are the events' own."""
        self._consumer = consumer

    @property
    def enabled(self) -> bool:
        """Whether the worker sends task events now."""
        dispatcher = getattr(self._consumer, "event_dispatcher", None)
        return bool(dispatcher is not None and dispatcher.enabled
                    and (not dispatcher.groups or "task" in dispatcher.groups))

    def received(self, job: Job, token: int) -> None:
        """``task-received`` and ``task-started`` of a job the loop took itself."""
        if self.enabled:
            data = json.dumps(job.data, separators=(",", ":"))
            args = data if len(data) <= ARGS_MAX else data[:ARGS_MAX] + "..."
            uuid = task_id(job.id, token)
            self._send("task-received", uuid=uuid, name=job.name, args=args, kwargs="{}",
                       retries=max(job.attempts_made - 1, 0), root_id=uuid, parent_id=None, eta=None, expires=None)
            self._send("task-started", uuid=uuid)  # the dispatcher adds the pid

    def succeeded(self, job: Job, token: int, value: Any, runtime_s: float) -> None:
        if self.enabled:
            self._send("task-succeeded", uuid=task_id(job.id, token), result=saferepr(value), runtime=runtime_s)

    def failed(self, job: Job, token: int, exc: BaseException, stack: str, retry: bool) -> None:
        if self.enabled:
            self._send("task-retried" if retry else "task-failed", uuid=task_id(job.id, token),
                       exception=saferepr(exc), traceback=stack)

    def revoked(self, job: Job, token: int) -> None:
        """The job was cancelled while it ran (its coroutine cancelled), as Celery's terminate."""
        if self.enabled:
            self._send("task-revoked", uuid=task_id(job.id, token), terminated=True, signum=None, expired=False)

    def _send(self, kind: str, **fields: Any) -> None:
        self._thread.submit(self._publish, kind, fields, time.time())

    def _publish(self, kind: str, fields: dict[str, Any], at: float) -> None:
        try:
            if self._dispatcher is None:
                app = self._consumer.app
                self._dispatcher = app.events.Dispatcher(app.connection_for_write(), hostname=self._consumer.hostname,
                                                         enabled=True)
            self._dispatcher.send(kind, timestamp=at, **fields)
        except Exception:  # an event is not worth failing a job for
            log.warning("could not send the Celery event %s of %s", kind, fields.get("uuid"), exc_info=True)

    def close(self) -> None:
        """Close the events' connection (from the events' thread, once its work is done)."""
        if self._dispatcher is not None:
            self._dispatcher.close()
