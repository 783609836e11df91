"""The Celery task behind each processor: claim the job, run the handler, record the outcome."""

from __future__ import annotations

import logging
import socket
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from celery import Task

from coordinator.errors import CoordinatorError, UnrecoverableError
from coordinator.models import Job
from coordinator.registry.registry import now_ms
from coordinator.runtime.maintenance import HEARTBEAT_TTL_MS
from coordinator.validation import MAX_RESULT_SIZE, encode_json

if TYPE_CHECKING:
    from coordinator.facade import JobQueueCoordinator

log = logging.getLogger("coordinator.job")

Processor = Callable[[Job], Any]


def is_unrecoverable(exc: BaseException) -> bool:
    """No retry for `UnrecoverableError` or a message starting with ``FATAL:`` (the seed's rule)."""
    return isinstance(exc, UnrecoverableError) or str(exc).startswith("FATAL:")


def register_processor_task(coord: JobQueueCoordinator, queue: str, handler: Processor) -> Task:
    """Register ``handler`` as the Celery task that runs every job of ``queue``."""

    def run(task: Task, queue: str, job_id: str, token: int) -> None:
        execute(coord, handler, queue, job_id, token, task.request.hostname or socket.gethostname())

    run.__doc__ = handler.__doc__
    return coord.app.task(
        run, name=coord.keys.task_name(queue), bind=True, acks_late=True,
        reject_on_worker_lost=True, ignore_result=True, typing=False,
    )


def execute(coord: JobQueueCoordinator, handler: Processor, queue: str, job_id: str, token: int,
            worker_id: str) -> None:
    """Run one dispatch of a job, at most once: a stale or duplicate message does nothing."""
    registry = coord.registry
    settings = coord.settings
    config = coord.queues.cached_config(queue)
    claim = registry.start(queue, job_id, token, worker_id, socket.gethostname(),
                           settings.lock_duration_ms, config.limiter)
    if claim.job is None:
        log.debug("job %s/%s dispatch %s not run: %s", queue, job_id, token, claim.status)
        return
    job = claim.job
    job._flows = coord.flows
    locks = coord.lock_keeper
    locks.add(queue, job_id)
    started = time.monotonic()
    log.info("job started", extra=_log_fields(job, started))
    try:
        try:
            payload = encode_json(handler(job), "result", MAX_RESULT_SIZE)
        except BaseException as exc:
            if not isinstance(exc, Exception):
                raise  # SystemExit, KeyboardInterrupt: the worker is going down; the lock expires
            if _record_failure(coord, job, token, exc, started):
                _count(coord, worker_id, failed=True)
            return
        owned = registry.finish(queue, job_id, token, "completed", payload=payload,
                                remove=job.options.remove_on_complete is True, duration_ms=_ms_since(started))
        if not owned:  # fenced off: the job was recovered or cancelled while this attempt ran
            log.warning("job result discarded: attempt %s no longer owns the job", token,
                        extra=_log_fields(job, started))
            return
        log.info("job completed", extra=_log_fields(job, started))
        _count(coord, worker_id, failed=False)
        keep = job.options.remove_on_complete
        if keep is not True and keep is not False:
            registry.trim(queue, config.retention, keep_completed=keep)
    finally:
        locks.remove(queue, job_id)


def _count(coord: JobQueueCoordinator, worker_id: str, failed: bool) -> None:
    """The worker's processed / failed counts (its status); a count is not worth failing a job for."""
    try:
        coord.registry.count_worker_outcome(worker_id, failed, HEARTBEAT_TTL_MS)
    except CoordinatorError:
        log.warning("could not count a job outcome for %s", worker_id, exc_info=True)


def _record_failure(coord: JobQueueCoordinator, job: Job, token: int, exc: Exception, started: float) -> bool:
    """Record a failed attempt (retry after its back-off, or failed for good); False if fenced off."""
    options = job.options
    max_retries = options.max_retries if options.max_retries is not None else coord.settings.default_max_retries
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    stack = "".join(traceback.format_exception(exc))
    retries_left = job.attempts_made <= max_retries and not is_unrecoverable(exc)
    if retries_left:
        due = now_ms() + options.backoff.delay_ms(job.attempts_made)
        owned = coord.registry.finish(job.queue, job.id, token, "retry", payload=reason, stack=stack,
                                      due_ms=due, duration_ms=_ms_since(started))
        log.warning("job failed, will retry: %s", reason, extra=_log_fields(job, started))
        return owned
    owned = coord.registry.finish(job.queue, job.id, token, "failed", payload=reason, stack=stack,
                                  remove=options.remove_on_fail is True, duration_ms=_ms_since(started))
    log.error("job failed: %s", reason, extra=_log_fields(job, started))
    return owned


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _log_fields(job: Job, started: float) -> dict[str, Any]:
    return {"queue": job.queue, "job_id": job.id, "job_name": job.name, "attempt": job.attempts_made,
            "duration_ms": _ms_since(started), "trace_id": job.trace_id, "worker": job.worker_id}
