"""The Celery task behind each processor: claim the job, run the handler, record the outcome."""

from __future__ import annotations

import inspect
import logging
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from celery import Celery, Task

from coordinator.clock import now_ms
from coordinator.errors import CoordinatorError, UnrecoverableError
from coordinator.heartbeats import HeartbeatStore
from coordinator.models import Job
from coordinator.queues import QueueReads
from coordinator.registry import Registry
from coordinator.registry.calls import Op
from coordinator.runtime.locks import LockKeeper
from coordinator.settings import Settings
from coordinator.validation import MAX_RESULT_SIZE, encode_json

if TYPE_CHECKING:
    from coordinator.runtime.async_runner import AsyncRunner

log = logging.getLogger("coordinator.job")

Processor = Callable[[Job], Any]


def is_unrecoverable(exc: BaseException) -> bool:
    """No retry for `UnrecoverableError` or a message starting with ``FATAL:`` (the seed's rule)."""
    return isinstance(exc, UnrecoverableError) or str(exc).startswith("FATAL:")


def register_processor_task(app: Celery, task_name: str, runner: JobRunner, handler: Processor,
                            async_runner: Callable[[], AsyncRunner]) -> Task:
    """Register ``handler`` as the Celery task ``task_name`` that runs every job of one queue; an
    ``async def`` handler's jobs go to this process's event loop (``async_runner()``)."""
    if inspect.iscoroutinefunction(handler):
        def run(task: Task, queue: str, job_id: str, token: int) -> None:
            async_runner().submit(handler, queue, job_id, token, task.request.hostname or socket.gethostname())
    else:
        def run(task: Task, queue: str, job_id: str, token: int) -> None:
            runner.execute(handler, queue, job_id, token, task.request.hostname or socket.gethostname())

    run.__doc__ = handler.__doc__
    return app.task(
        run, name=task_name, bind=True, acks_late=True,
        reject_on_worker_lost=True, ignore_result=True, typing=False,
    )


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended: ``completed`` (payload: the result's JSON), ``retry`` or ``failed``
    (payload: the reason), as `RegistryOps.finish` records it."""

    kind: str
    payload: str
    duration_ms: int
    stack: str = ""
    due_ms: int = 0
    remove: bool = False


class JobRunner:
    """Runs one dispatch of a job in the worker in three steps, shared by sync and async processors:
    claim (`claim_op`), the handler, and the outcome recorded (`record_op`)."""

    def __init__(self, registry: Registry, settings: Settings, configs: QueueReads,
                 locks: LockKeeper, heartbeats: HeartbeatStore) -> None:
        self.registry = registry
        self.settings = settings
        self.configs = configs
        """The queue configs, cached (`QueueManager.reads`)."""
        self.locks = locks
        self.heartbeats = heartbeats

    def execute(self, handler: Processor, queue: str, job_id: str, token: int, worker_id: str) -> None:
        """Run one dispatch of a job, at most once: a stale or duplicate message does nothing."""
        job = self.registry.run(self.claim_op(queue, job_id, token, worker_id))
        if job is None:
            return
        job._registry = self.registry
        started = time.monotonic()
        log.info("job started", extra=log_fields(job, started))
        try:
            try:
                outcome = completed(job, handler(job), started)
            except BaseException as exc:
                if not isinstance(exc, Exception):
                    raise  # SystemExit, KeyboardInterrupt: the worker is going down; the lock expires
                outcome = failed(job, exc, started, self.settings.default_max_retries)
            self.registry.run(self.record_op(job, token, worker_id, outcome, started))
        finally:
            self.locks.remove(queue, job_id)

    def claim_op(self, queue: str, job_id: str, token: int, worker_id: str) -> Op[Job | None]:
        """Start one dispatch of a job (its lock taken, renewed by the lock keeper from now on), or
        None for a stale, duplicate, paused, rate-limited or expired message, which does nothing."""
        config = (yield from self.configs.cached_op(queue))[1]
        claim = yield from self.registry.ops.start(queue, job_id, token, worker_id, socket.gethostname(),
                                                   self.settings.lock_duration_ms, config.limiter)
        if claim.job is None:
            log.debug("job %s/%s dispatch %s not run: %s", queue, job_id, token, claim.status)
            return None
        self.locks.add(queue, job_id)
        claim.job._token = token
        return claim.job

    def record_op(self, job: Job, token: int, worker_id: str, outcome: Outcome, started: float) -> Op[bool]:
        """Record the outcome (fenced by the token), count it on the worker, trim per retention.
        False if this attempt no longer owns the job."""
        owned = yield from self.registry.ops.finish(
            job.queue, job.id, token, outcome.kind, payload=outcome.payload, stack=outcome.stack,
            due_ms=outcome.due_ms, remove=outcome.remove, duration_ms=outcome.duration_ms)
        fields = log_fields(job, started)
        if not owned:  # fenced off: the job was recovered or cancelled while this attempt ran
            log.warning("job result discarded: attempt %s no longer owns the job", token, extra=fields)
            return False
        if outcome.kind == "completed":
            log.info("job completed", extra=fields)
        elif outcome.kind == "retry":
            log.warning("job failed, will retry: %s", outcome.payload, extra=fields)
        else:
            log.error("job failed: %s", outcome.payload, extra=fields)
        try:  # the worker's processed / failed counts (its status): not worth failing a job for
            yield from self.heartbeats.ops.count_outcome(worker_id, outcome.kind != "completed")
        except CoordinatorError:
            log.warning("could not count a job outcome for %s", worker_id, exc_info=True)
        keep = job.options.remove_on_complete
        if outcome.kind == "completed" and keep is not True and keep is not False:
            config = (yield from self.configs.cached_op(job.queue))[1]
            yield from self.registry.ops.trim(job.queue, config.retention, keep_completed=keep)
        return True


def completed(job: Job, result: Any, started: float) -> Outcome:
    """The outcome of a handler that returned ``result`` (InvalidJobDataError if it is no JSON)."""
    return Outcome("completed", encode_json(result, "result", MAX_RESULT_SIZE), _ms_since(started),
                   remove=job.options.remove_on_complete is True)


def failed(job: Job, exc: BaseException, started: float, default_max_retries: int) -> Outcome:
    """A failed attempt: retried after its back-off while retries are left, else failed for good."""
    options = job.options
    max_retries = options.max_retries if options.max_retries is not None else default_max_retries
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    stack = "".join(traceback.format_exception(exc))
    if job.attempts_made <= max_retries and not is_unrecoverable(exc):
        due_ms = now_ms() + options.backoff.delay_ms(job.attempts_made)
        return Outcome("retry", reason, _ms_since(started), stack, due_ms=due_ms)
    return Outcome("failed", reason, _ms_since(started), stack, remove=options.remove_on_fail is True)


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def log_fields(job: Job, started: float) -> dict[str, Any]:
    """The structured fields of a job's log lines."""
    return {"queue": job.queue, "job_id": job.id, "job_name": job.name, "attempt": job.attempts_made,
            "duration_ms": _ms_since(started), "trace_id": job.trace_id, "worker": job.worker_id}
