"""The Celery task behind each processor: claim the job, run the handler, record the outcome.

An attempt runs in three steps shared by sync and ``async def`` processors (`runtime.async_runner`):
`JobRunner.claim_op`, the handler, and `JobRunner.record_op` with the outcome that `completed` or
`failed` made of the handler's return or error. Both kinds register an `Attempt` with the lock
keeper, which renews its lock, flags it when cancelled and watches its timeout.
"""

from __future__ import annotations

import inspect
import logging
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from celery import Celery, Task
from celery.exceptions import Ignore, Reject, Retry, SoftTimeLimitExceeded

from coordinator.clock import now_ms
from coordinator.errors import JobTimeoutError, RedisUnavailableError, UnrecoverableError
from coordinator.flows.producer import FlowProducer
from coordinator.models import Job, QueueConfig
from coordinator.patience import while_redis_away
from coordinator.queues import QueueReads
from coordinator.registry import Registry
from coordinator.registry.calls import Op
from coordinator.runtime.control import Attempt
from coordinator.runtime.locks import LockKeeper
from coordinator.settings import Settings
from coordinator.validation import MAX_RESULT_SIZE, encode_json

if TYPE_CHECKING:
    from coordinator.runtime.async_runner import AsyncRunner

log = logging.getLogger("coordinator.job")

Processor = Callable[[Job], Any]
#: How long a worker repeats a claim while Redis does not answer before it puts the message back.
CLAIM_PATIENCE_S = 60.0


def is_unrecoverable(exc: BaseException) -> bool:
    """No retry for `UnrecoverableError` or a message starting with ``FATAL:`` (the seed's rule)."""
    return isinstance(exc, UnrecoverableError) or str(exc).startswith("FATAL:")


def register_processor_task(app: Celery, task_name: str, runner: JobRunner, handler: Processor,
                            async_runner: Callable[[], AsyncRunner]) -> Task:
    """Register ``handler`` as the Celery task ``task_name`` that runs every job of one queue; an
    ``async def`` handler's jobs go to this process's event loop (``async_runner()``)."""
    if inspect.iscoroutinefunction(handler):
        def run(task: Task, queue: str, job_id: str, token: int) -> Any:
            async_runner().submit(handler, queue, job_id, token, task.request.hostname or socket.gethostname())
            raise Ignore()  # handed over (or not run): the loop sends the outcome's event (`task_events`)
    else:
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


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended: ``completed`` (payload: the result's JSON), ``retry`` or ``failed``
    (payload: the reason), as `RegistryOps.finish` records it."""

    kind: str
    payload: str
    stack: str = ""
    due_ms: int = 0
    remove: bool = False


class JobRunner:
    """Runs one dispatch of a job in the worker: claim, handler, outcome, counts (through ``locks``)."""

    def __init__(self, registry: Registry, settings: Settings, configs: QueueReads, locks: LockKeeper,
                 flows: FlowProducer | None = None) -> None:
        self.registry = registry
        self.settings = settings
        self.configs = configs
        """The queue configs, cached (`QueueManager.reads`)."""
        self.locks = locks
        self.flows = flows
        """Flows: a running job reads its children's results and its batch through it."""

    def execute(self, handler: Processor, queue: str, job_id: str, token: int, worker_id: str) -> Ran | None:
        """Run one dispatch of a job, at most once: a stale or duplicate message does nothing (None).

        A handler with a ``finished(job, outcome, value)`` method (the adopted-task runner) is told
        the outcome once the registry recorded it."""
        registry = self.registry
        claimed = self.claim(queue, job_id, token, worker_id)
        if claimed is None:
            return None
        job, config = claimed
        job._registry = registry
        finished = getattr(handler, "finished", None)
        locks = self.locks
        started = time.monotonic()
        attempt = Attempt(queue, job_id, token, timeout_s=job.options.timeout, worker=worker_id,
                          leases=registry.ops.lease_keys(queue, job_id, job.options.group, job.options.limits))
        if attempt.timeout_s is not None:
            attempt.on_timeout = lambda: self._timed_out(job, attempt, started)
        job._attempt = attempt
        locks.add(attempt)
        verbose = log.isEnabledFor(logging.INFO)  # per-job lines cost nothing when nobody reads INFO
        if verbose:
            log.info("job started", extra=log_fields(job, started))
        try:
            try:
                try:
                    value = handler(job)
                finally:
                    attempt.leave_handler()
                outcome = completed(job, value)
            except BaseException as exc:
                if not isinstance(exc, Exception):
                    raise  # SystemExit, KeyboardInterrupt: the worker is going down; the lock expires
                if not attempt.claim_outcome() or attempt.is_cancelled():
                    discarded(job, attempt, started)
                    return None
                if isinstance(exc, SoftTimeLimitExceeded):  # prefork's own limit: the same meaning
                    exc = _timeout_error(attempt)
                failure = failed(job, exc, self.settings.default_max_retries)
                if not registry.run(self.record_op(job, token, failure, started)):
                    return None
                locks.count(worker_id, failed=True)
                ran = Ran(failure.kind, exc, failure.due_ms)
                if finished is not None:
                    finished(job, ran.outcome, exc)
                return ran
            if not attempt.claim_outcome():
                discarded(job, attempt, started)
                return None
            if not registry.run(self.record_op(job, token, outcome, started, verbose)):
                return None
            locks.count(worker_id, failed=False)
            if finished is not None:
                finished(job, "completed", value)
            registry.run(self.trim_op(job, config))
            return Ran("completed", value)
        finally:
            locks.remove(attempt)

    def claim(self, queue: str, job_id: str, token: int, worker_id: str) -> tuple[Job, QueueConfig] | None:
        """`claim_op`, repeated while Redis does not answer (paused, restarting, a dropped
        connection): the message is acked whatever the task raises, so a claim given up on would
        lose the job. After `CLAIM_PATIENCE_S` the message is put back (Celery's ``Reject``). A
        claim that ran but whose reply was lost answers "stale" when repeated; its job's lock
        then lapses and the stalled-job sweep sends it back to waiting."""
        try:
            return while_redis_away(lambda: self.registry.run(self.claim_op(queue, job_id, token, worker_id)),
                                    CLAIM_PATIENCE_S, "claim of job %s/%s dispatch %s", queue, job_id, token)
        except RedisUnavailableError as exc:
            raise Reject(exc, requeue=True) from exc

    def claim_op(self, queue: str, job_id: str, token: int, worker_id: str) -> Op[tuple[Job, QueueConfig] | None]:
        """Start one dispatch of a job (its lock taken): the job and its queue's config, or None
        for a stale, duplicate, paused, rate-limited or expired message, which does nothing. The
        caller registers the attempt with the lock keeper."""
        config = (yield from self.configs.cached_op(queue))[1]
        claim = yield from self.registry.ops.start(queue, job_id, token, worker_id, socket.gethostname(),
                                                   self.settings.lock_duration_ms, config.limiter,
                                                   config.concurrency)
        if claim.job is None:
            log.debug("job %s/%s dispatch %s not run: %s", queue, job_id, token, claim.status)
            return None
        claim.job._token = token
        claim.job._flows = self.flows
        return claim.job, config

    def record_op(self, job: Job, token: int, outcome: Outcome, started: float, verbose: bool = True) -> Op[bool]:
        """Record the outcome (fenced by the token); False if this attempt no longer owns the job."""
        owned = yield from self.registry.ops.finish(
            job.queue, job.id, token, outcome.kind, payload=outcome.payload, stack=outcome.stack,
            due_ms=outcome.due_ms, remove=outcome.remove, duration_ms=_ms_since(started),
            group=job.options.group, limits=job.options.limits)
        if outcome.kind == "retry":
            log.warning("job failed, will retry: %s", outcome.payload, extra=log_fields(job, started))
        elif outcome.kind == "failed":
            log.error("job failed: %s", outcome.payload, extra=log_fields(job, started))
        elif not owned:  # fenced off: the job was recovered or cancelled while this attempt ran
            log.warning("job result discarded: attempt %s no longer owns the job", token,
                        extra=log_fields(job, started))
        elif verbose:
            log.info("job completed", extra=log_fields(job, started))
        return bool(owned)

    def trim_op(self, job: Job, config: QueueConfig) -> Op[None]:
        """After a completion: trim the queue's completed jobs when the job's ``remove_on_complete``
        is a count."""
        keep = job.options.remove_on_complete
        if keep is not True and keep is not False:
            yield from self.registry.ops.trim(job.queue, config.retention, keep_completed=keep)

    def _timed_out(self, job: Job, attempt: Attempt, started: float) -> None:
        """The keeper's call past the timeout: record the failed attempt unless its outcome is in."""
        if attempt.claim_outcome():
            failure = failed(job, _timeout_error(attempt), self.settings.default_max_retries)
            if self.registry.run(self.record_op(job, attempt.token, failure, started)):
                self.locks.count(attempt.worker, failed=True)


def completed(job: Job, value: Any) -> Outcome:
    """The outcome of a handler that returned ``value`` (InvalidJobDataError if it is no JSON)."""
    return Outcome("completed", encode_json(value, "result", MAX_RESULT_SIZE),
                   remove=job.options.remove_on_complete is True)


def failed(job: Job, exc: Exception, default_max_retries: int) -> Outcome:
    """A failed attempt: retried after its back-off (or when a Celery ``Retry`` says) while
    retries are left, else failed for good."""
    options = job.options
    max_retries = options.max_retries if options.max_retries is not None else default_max_retries
    cause = exc.exc if isinstance(exc, Retry) and isinstance(exc.exc, BaseException) else exc
    reason = f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
    stack = "".join(traceback.format_exception(cause))
    if isinstance(exc, Retry):  # self.retry() of a Celery task: Celery counted its max_retries
        due = _retry_due(exc.when, options.backoff.delay_ms(job.attempts_made))
    elif job.attempts_made <= max_retries and not is_unrecoverable(exc):
        due = now_ms() + options.backoff.delay_ms(job.attempts_made)
    else:
        return Outcome("failed", reason, stack, remove=options.remove_on_fail is True)
    return Outcome("retry", reason, stack, due_ms=due)


def _retry_due(when: Any, backoff_ms: int) -> int:
    """Epoch ms of a Celery retry's ``when`` (seconds from now, or a datetime); the back-off without one."""
    if isinstance(when, datetime):
        return max(int(when.timestamp() * 1000), now_ms() + 1)
    if isinstance(when, (int, float)):
        return now_ms() + max(int(when * 1000), 1)
    return now_ms() + max(backoff_ms, 1)


def _timeout_error(attempt: Attempt) -> JobTimeoutError:
    return JobTimeoutError(f"ran past its timeout of {attempt.timeout_s:g} s")


def discarded(job: Job, attempt: Attempt, started: float) -> None:
    """The attempt's own outcome is not recorded: it was cancelled, timed out or lost its job."""
    log.warning("job attempt %s stopped, outcome discarded: %s", attempt.token,
                attempt.cancel_reason or "its outcome was already recorded", extra=log_fields(job, started))


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def log_fields(job: Job, started: float) -> dict[str, Any]:
    """The structured fields of a job's log lines."""
    return {"queue": job.queue, "job_id": job.id, "job_name": job.name, "attempt": job.attempts_made,
            "duration_ms": _ms_since(started), "trace_id": job.trace_id, "worker": job.worker_id}
