"""The Celery task behind each processor: claim the job, run the handler, record the outcome."""

from __future__ import annotations

import logging
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from celery import Celery, Task
from celery.exceptions import Ignore, Retry, SoftTimeLimitExceeded

from coordinator.clock import now_ms
from coordinator.errors import JobTimeoutError, UnrecoverableError
from coordinator.flows.producer import FlowProducer
from coordinator.models import Job, QueueConfig
from coordinator.registry import Registry
from coordinator.runtime.control import Attempt
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

    def run(task: Task, queue: str, job_id: str, token: int) -> Any:
        return celery_outcome(runner.execute(handler, queue, job_id, token,
                                             task.request.hostname or socket.gethostname()))

    run.__doc__ = handler.__doc__
    return app.task(
        run, name=task_name, bind=True, acks_late=True,
        reject_on_worker_lost=True, ignore_result=True, typing=False,
    )


@dataclass(frozen=True)
class Ran:
    """What one dispatch recorded: ``completed`` (value: the result), ``retry`` (value: the
    exception, ``due_ms``: when it runs again) or ``failed`` (value: the exception)."""

    outcome: str
    value: Any
    due_ms: int = 0


def celery_outcome(ran: Ran | None) -> Any:
    """Tell Celery the job's outcome, so its events (and Flower) say task-succeeded only for a
    success: the result returned, ``Retry`` for a retry, the exception of a final failure raised,
    ``Ignore`` (no outcome event) for a dispatch that did not run or whose result was fenced off."""
    if ran is None:
        raise Ignore()
    if ran.outcome == "completed":
        return ran.value
    exc = ran.value
    if ran.outcome == "retry" and not isinstance(exc, Retry):
        raise Retry(exc=exc, when=datetime.fromtimestamp(ran.due_ms / 1000, tz=timezone.utc)) from exc
    raise exc


class JobRunner:
    """Runs one dispatch of a job in the worker: claim, handler, outcome, counts (through ``locks``)."""

    def __init__(self, registry: Registry, settings: Settings, config_of: Callable[[str], QueueConfig],
                 locks: LockKeeper, flows: FlowProducer | None = None) -> None:
        self.registry = registry
        self.settings = settings
        self.config_of = config_of
        """The queue's config, cached (`QueueManager.cached_config`)."""
        self.locks = locks
        self.flows = flows
        """Flows: a running job reads its children's results and its batch through it."""

    def execute(self, handler: Processor, queue: str, job_id: str, token: int, worker_id: str) -> Ran | None:
        """Run one dispatch of a job, at most once: a stale or duplicate message does nothing (None).

        A handler with a ``finished(job, outcome, value)`` method (the adopted-task runner) is told
        the outcome once the registry recorded it."""
        registry = self.registry
        config = self.config_of(queue)
        claim = registry.start(queue, job_id, token, worker_id, socket.gethostname(),
                               self.settings.lock_duration_ms, config.limiter)
        if claim.job is None:
            log.debug("job %s/%s dispatch %s not run: %s", queue, job_id, token, claim.status)
            return None
        job = claim.job
        job._flows = self.flows
        finished = getattr(handler, "finished", None)
        locks = self.locks
        started = time.monotonic()
        attempt = Attempt(queue, job_id, token, timeout_s=job.options.timeout, worker=worker_id)
        if attempt.timeout_s is not None:
            attempt.on_timeout = lambda: self._timed_out(job, attempt, started)
        job._attempt = attempt
        locks.add(attempt)
        verbose = log.isEnabledFor(logging.INFO)  # per-job lines cost nothing when nobody reads INFO
        if verbose:
            log.info("job started", extra=_log_fields(job, started))
        try:
            try:
                try:
                    value = handler(job)
                finally:
                    attempt.leave_handler()
                payload = encode_json(value, "result", MAX_RESULT_SIZE)
            except BaseException as exc:
                if not isinstance(exc, Exception):
                    raise  # SystemExit, KeyboardInterrupt: the worker is going down; the lock expires
                if not attempt.claim_outcome() or attempt.is_cancelled():
                    _discarded(job, attempt, started)
                    return None
                if isinstance(exc, SoftTimeLimitExceeded):  # prefork's own limit: the same meaning
                    exc = _timeout_error(attempt)
                due = self._record_failure(job, token, exc, started)
                if due is None:
                    return None
                locks.count(worker_id, failed=True)
                ran = Ran("retry" if due else "failed", exc, due)
                if finished is not None:
                    finished(job, ran.outcome, exc)
                return ran
            if not attempt.claim_outcome():
                _discarded(job, attempt, started)
                return None
            owned = registry.finish(queue, job_id, token, "completed", payload=payload,
                                    remove=job.options.remove_on_complete is True, duration_ms=_ms_since(started))
            if not owned:  # fenced off: the job was recovered or cancelled while this attempt ran
                log.warning("job result discarded: attempt %s no longer owns the job", token,
                            extra=_log_fields(job, started))
                return None
            if verbose:
                log.info("job completed", extra=_log_fields(job, started))
            locks.count(worker_id, failed=False)
            if finished is not None:
                finished(job, "completed", value)
            keep = job.options.remove_on_complete
            if keep is not True and keep is not False:
                registry.trim(queue, config.retention, keep_completed=keep)
            return Ran("completed", value)
        finally:
            locks.remove(attempt)

    def _timed_out(self, job: Job, attempt: Attempt, started: float) -> None:
        """The keeper's call past the timeout: record the failed attempt unless its outcome is in."""
        if attempt.claim_outcome() and self._record_failure(
                job, attempt.token, _timeout_error(attempt), started) is not None:
            self.locks.count(attempt.worker, failed=True)

    def _record_failure(self, job: Job, token: int, exc: Exception, started: float) -> int | None:
        """Record a failed attempt: retry after its back-off (or when a Celery ``Retry`` says), or
        failed for good. Returns the retry's due time (ms), 0 if failed, None if fenced off."""
        options = job.options
        max_retries = options.max_retries if options.max_retries is not None else self.settings.default_max_retries
        cause = exc.exc if isinstance(exc, Retry) and isinstance(exc.exc, BaseException) else exc
        reason = f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
        stack = "".join(traceback.format_exception(cause))
        if isinstance(exc, Retry):  # self.retry() of a Celery task: Celery counted its max_retries
            due = _retry_due(exc.when, options.backoff.delay_ms(job.attempts_made))
        elif job.attempts_made <= max_retries and not is_unrecoverable(exc):
            due = now_ms() + options.backoff.delay_ms(job.attempts_made)
        else:
            due = 0
        if due:
            owned = self.registry.finish(job.queue, job.id, token, "retry", payload=reason, stack=stack,
                                         due_ms=due, duration_ms=_ms_since(started))
            log.warning("job failed, will retry: %s", reason, extra=_log_fields(job, started))
            return due if owned else None
        owned = self.registry.finish(job.queue, job.id, token, "failed", payload=reason, stack=stack,
                                     remove=options.remove_on_fail is True, duration_ms=_ms_since(started))
        log.error("job failed: %s", reason, extra=_log_fields(job, started))
        return 0 if owned else None


def _retry_due(when: Any, backoff_ms: int) -> int:
    """Epoch ms of a Celery retry's ``when`` (seconds from now, or a datetime); the back-off without one."""
    if isinstance(when, datetime):
        return max(int(when.timestamp() * 1000), now_ms() + 1)
    if isinstance(when, (int, float)):
        return now_ms() + max(int(when * 1000), 1)
    return now_ms() + max(backoff_ms, 1)


def _timeout_error(attempt: Attempt) -> JobTimeoutError:
    return JobTimeoutError(f"ran past its timeout of {attempt.timeout_s:g} s")


def _discarded(job: Job, attempt: Attempt, started: float) -> None:
    """The attempt's own outcome is not recorded: it was cancelled, timed out or lost its job."""
    log.warning("job attempt %s stopped, outcome discarded: %s", attempt.token,
                attempt.cancel_reason or "its outcome was already recorded", extra=_log_fields(job, started))


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _log_fields(job: Job, started: float) -> dict[str, Any]:
    return {"queue": job.queue, "job_id": job.id, "job_name": job.name, "attempt": job.attempts_made,
            "duration_ms": _ms_since(started), "trace_id": job.trace_id, "worker": job.worker_id}
