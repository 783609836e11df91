"""The Celery task behind each processor: claim the job, run the handler, record the outcome."""

from __future__ import annotations

import logging
import socket
import time
import traceback
from collections.abc import Callable
from typing import Any

from celery import Celery, Task

from coordinator.clock import now_ms
from coordinator.errors import CoordinatorError, UnrecoverableError
from coordinator.flows.producer import FlowProducer
from coordinator.heartbeats import HeartbeatStore
from coordinator.models import Job, QueueConfig
from coordinator.registry import Registry
from coordinator.runtime.locks import LockKeeper
from coordinator.settings import Settings
from coordinator.validation import MAX_RESULT_SIZE, encode_json

log = logging.getLogger("coordinator.job")

Processor = Callable[[Job], Any]


def is_unrecoverable(exc: BaseException) -> bool:
    """No retry for `UnrecoverableError` or a message starting with ``FATAL:`` (the seed's rule)."""
    return isinstance(exc, UnrecoverableError) or str(exc).startswith("FATAL:")


def register_processor_task(app: Celery, task_name: str, runner: JobRunner, handler: Processor) -> Task:
    """Register ``handler`` as the Celery task ``task_name`` that runs every job of one queue."""

    def run(task: Task, queue: str, job_id: str, token: int) -> None:
        runner.execute(handler, queue, job_id, token, task.request.hostname or socket.gethostname())

    run.__doc__ = handler.__doc__
    return app.task(
        run, name=task_name, bind=True, acks_late=True,
        reject_on_worker_lost=True, ignore_result=True, typing=False,
    )


class JobRunner:
    """Runs one dispatch of a job in the worker: claim, handler, outcome, counts."""

    def __init__(self, registry: Registry, settings: Settings, config_of: Callable[[str], QueueConfig],
                 locks: LockKeeper, heartbeats: HeartbeatStore, flows: FlowProducer | None = None) -> None:
        self.registry = registry
        self.settings = settings
        self.config_of = config_of
        """The queue's config, cached (`QueueManager.cached_config`)."""
        self.locks = locks
        self.heartbeats = heartbeats
        self.flows = flows
        """Flows: a running job reads its children's results and its batch through it."""

    def execute(self, handler: Processor, queue: str, job_id: str, token: int, worker_id: str) -> None:
        """Run one dispatch of a job, at most once: a stale or duplicate message does nothing."""
        registry = self.registry
        config = self.config_of(queue)
        claim = registry.start(queue, job_id, token, worker_id, socket.gethostname(),
                               self.settings.lock_duration_ms, config.limiter)
        if claim.job is None:
            log.debug("job %s/%s dispatch %s not run: %s", queue, job_id, token, claim.status)
            return
        job = claim.job
        job._flows = self.flows
        locks = self.locks
        locks.add(queue, job_id)
        started = time.monotonic()
        log.info("job started", extra=_log_fields(job, started))
        try:
            try:
                payload = encode_json(handler(job), "result", MAX_RESULT_SIZE)
            except BaseException as exc:
                if not isinstance(exc, Exception):
                    raise  # SystemExit, KeyboardInterrupt: the worker is going down; the lock expires
                if self._record_failure(job, token, exc, started):
                    self._count(worker_id, failed=True)
                return
            owned = registry.finish(queue, job_id, token, "completed", payload=payload,
                                    remove=job.options.remove_on_complete is True, duration_ms=_ms_since(started))
            if not owned:  # fenced off: the job was recovered or cancelled while this attempt ran
                log.warning("job result discarded: attempt %s no longer owns the job", token,
                            extra=_log_fields(job, started))
                return
            log.info("job completed", extra=_log_fields(job, started))
            self._count(worker_id, failed=False)
            keep = job.options.remove_on_complete
            if keep is not True and keep is not False:
                registry.trim(queue, config.retention, keep_completed=keep)
        finally:
            locks.remove(queue, job_id)

    def _count(self, worker_id: str, failed: bool) -> None:
        """The worker's processed / failed counts (its status); a count is not worth failing a job for."""
        try:
            self.heartbeats.count_outcome(worker_id, failed)
        except CoordinatorError:
            log.warning("could not count a job outcome for %s", worker_id, exc_info=True)

    def _record_failure(self, job: Job, token: int, exc: Exception, started: float) -> bool:
        """Record a failed attempt (retry after its back-off, or failed for good); False if fenced off."""
        options = job.options
        max_retries = options.max_retries if options.max_retries is not None else self.settings.default_max_retries
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        stack = "".join(traceback.format_exception(exc))
        retries_left = job.attempts_made <= max_retries and not is_unrecoverable(exc)
        if retries_left:
            due = now_ms() + options.backoff.delay_ms(job.attempts_made)
            owned = self.registry.finish(job.queue, job.id, token, "retry", payload=reason, stack=stack,
                                         due_ms=due, duration_ms=_ms_since(started))
            log.warning("job failed, will retry: %s", reason, extra=_log_fields(job, started))
            return owned
        owned = self.registry.finish(job.queue, job.id, token, "failed", payload=reason, stack=stack,
                                     remove=options.remove_on_fail is True, duration_ms=_ms_since(started))
        log.error("job failed: %s", reason, extra=_log_fields(job, started))
        return owned


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _log_fields(job: Job, started: float) -> dict[str, Any]:
    return {"queue": job.queue, "job_id": job.id, "job_name": job.name, "attempt": job.attempts_made,
            "duration_ms": _ms_since(started), "trace_id": job.trace_id, "worker": job.worker_id}
