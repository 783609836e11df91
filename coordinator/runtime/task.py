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

from celery import Task

from coordinator.errors import CoordinatorError, UnrecoverableError
from coordinator.models import Job
from coordinator.registry.calls import Op
from coordinator.registry.ops import now_ms
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
    """Register ``handler`` as the Celery task that runs every job of ``queue``; an ``async def``
    handler's jobs are handed to the process's event loop (`runtime.async_runner`)."""
    if inspect.iscoroutinefunction(handler):
        from coordinator.runtime.async_runner import submit  # imports this module

        def run(task: Task, queue: str, job_id: str, token: int) -> None:
            submit(coord, handler, queue, job_id, token, task.request.hostname or socket.gethostname())
    else:
        def run(task: Task, queue: str, job_id: str, token: int) -> None:
            execute(coord, handler, queue, job_id, token, task.request.hostname or socket.gethostname())

    run.__doc__ = handler.__doc__
    return coord.app.task(
        run, name=coord.keys.task_name(queue), bind=True, acks_late=True,
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


def claim_op(coord: JobQueueCoordinator, queue: str, job_id: str, token: int, worker_id: str) -> Op[Job | None]:
    """Start one dispatch of a job (its lock taken, renewed by the lock keeper from now on), or
    None for a stale, duplicate, paused or rate-limited message, which then does nothing."""
    config = (yield from coord.queues.reads.cached_op(queue))[1]
    started = yield from coord.registry.ops.start(queue, job_id, token, worker_id, socket.gethostname(),
                                                  coord.settings.lock_duration_ms, config.limiter)
    if started.job is None:
        log.debug("job %s/%s dispatch %s not run: %s", queue, job_id, token, started.status)
        return None
    coord.lock_keeper.add(queue, job_id)
    started.job._token = token
    return started.job


def claim(coord: JobQueueCoordinator, queue: str, job_id: str, token: int, worker_id: str) -> Job | None:
    """`claim_op` run here, the job bound to the registry for its progress and logs."""
    job = coord.registry.run(claim_op(coord, queue, job_id, token, worker_id))
    if job is not None:
        job._registry = coord.registry
    return job


def execute(coord: JobQueueCoordinator, handler: Processor, queue: str, job_id: str, token: int,
            worker_id: str) -> None:
    """Run one dispatch of a job, at most once: a stale or duplicate message does nothing."""
    job = claim(coord, queue, job_id, token, worker_id)
    if job is None:
        return
    started = time.monotonic()
    log.info("job started", extra=log_fields(job, started))
    try:
        try:
            outcome = completed(job, handler(job), started)
        except BaseException as exc:
            if not isinstance(exc, Exception):
                raise  # SystemExit, KeyboardInterrupt: the worker is going down; the lock expires
            outcome = failed(job, exc, started, coord.settings.default_max_retries)
        coord.registry.run(record_op(coord, job, token, worker_id, outcome, started))
    finally:
        coord.lock_keeper.remove(queue, job_id)


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


def record_op(coord: JobQueueCoordinator, job: Job, token: int, worker_id: str, outcome: Outcome,
              started: float) -> Op[bool]:
    """Record the outcome (fenced by the token), count it on the worker, trim per retention; as a
    registry operation, so sync and async processors record alike. False if fenced off."""
    ops = coord.registry.ops
    owned = yield from ops.finish(job.queue, job.id, token, outcome.kind, payload=outcome.payload,
                                  stack=outcome.stack, due_ms=outcome.due_ms, remove=outcome.remove,
                                  duration_ms=outcome.duration_ms)
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
        yield from ops.count_worker_outcome(worker_id, outcome.kind != "completed", HEARTBEAT_TTL_MS)
    except CoordinatorError:
        log.warning("could not count a job outcome for %s", worker_id, exc_info=True)
    keep = job.options.remove_on_complete
    if outcome.kind == "completed" and keep is not True and keep is not False:
        config = (yield from coord.queues.reads.cached_op(job.queue))[1]
        yield from ops.trim(job.queue, config.retention, keep_completed=keep)
    return True


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def log_fields(job: Job, started: float) -> dict[str, Any]:
    """The structured fields of a job's log lines."""
    return {"queue": job.queue, "job_id": job.id, "job_name": job.name, "attempt": job.attempts_made,
            "duration_ms": _ms_since(started), "trace_id": job.trace_id, "worker": job.worker_id}
