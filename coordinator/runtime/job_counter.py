"""Processed and failed counts of a worker, kept in its heartbeat hash in Redis."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from celery import signals

if TYPE_CHECKING:
    from coordinator.facade import JobQueueCoordinator

log = logging.getLogger(__name__)


class JobCounter:
    """Counts processed and failed jobs into the heartbeat hash of the worker that ran them.

    Connected to Celery's ``task_postrun`` signal, which fires where the task ran (a pool child
    under prefork), so the count lands in Redis rather than in one process's memory. A processor
    task swallows the handler's exception after recording it, so the outcome is read from the
    job's own record, fenced by the dispatch token: a stale or parked message counts as nothing.
    """

    def __init__(self, coord: JobQueueCoordinator, ttl_ms: int) -> None:
        self.coord = coord
        self.ttl_ms = ttl_ms
        self.task_prefix = coord.keys.task_name("")
        signals.task_postrun.connect(self.on_postrun, weak=True)

    def on_postrun(self, sender: Any = None, task: Any = None, kwargs: dict[str, Any] | None = None,
                   **_: Any) -> None:
        name = getattr(task, "name", "") or ""
        if not name.startswith(self.task_prefix) or not kwargs or "job_id" not in kwargs:
            return
        node = getattr(task.request, "hostname", None)
        if not node:
            return
        try:
            self.count(node, kwargs["queue"], kwargs["job_id"], kwargs.get("token"))
        except Exception:  # a count is not worth failing a job for
            log.warning("could not count the outcome of job %s", kwargs.get("job_id"), exc_info=True)

    def count(self, node: str, queue: str, job_id: str, token: Any) -> None:
        client = self.coord.registry.client
        qk = self.coord.registry.queue_keys(queue)
        state, current, worker = client.hmget(qk.job(job_id), "state", "token", "worker")
        outcome: tuple[str, ...]
        if state is None:  # removed at once (remove_on_complete / remove_on_fail)
            outcome = ("processed",)
        elif str(current) != str(token) or worker != node:
            return
        elif state == "completed":
            outcome = ("processed",)
        elif state in ("failed", "delayed"):
            outcome = ("processed", "failed")
        else:
            return  # parked or still active: this message ran no attempt to its end
        key = self.coord.keys.worker(node)
        pipe = client.pipeline(transaction=True)
        for counter in outcome:
            pipe.hincrby(key, counter, 1)
        pipe.pexpire(key, self.ttl_ms)
        pipe.execute()
