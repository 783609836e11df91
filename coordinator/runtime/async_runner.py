"""Runs the jobs of ``async def`` processors as coroutines on one event loop per worker process.

The managed worker of an async queue is one ``celery worker -P solo`` process (maintenance,
heartbeat, pause, beat and supervision as for any worker) with an event-loop thread, where up to
``concurrency`` jobs run at once. Jobs reach the loop two ways:

- With Redis as the broker, the loop's own consumer takes messages straight from the queue's
  broker lists (`lua/take.lua`, recording them in kombu's unacked index in the same step), claims
  them with the same `task.claim_op` as sync jobs, then acks them: Celery's per-message work
  (one task run on the main thread per job) would cap a process at a few hundred jobs/s.
- Otherwise (RabbitMQ), and for any message Celery's consumer receives, the Celery task claims the
  job (before Celery acks the message) and hands it to the loop; it waits for a free slot first,
  which holds the next message back.

Each coroutine records its outcome with the same `task.record_op` as a sync job, over
redis.asyncio. Claims and finishes go through `AsyncRegistry.run_batched`: those issued in one turn
of the loop share one pipeline, so a busy worker pays a round trip per batch, not per job. Nothing
on the loop waits on a socket: the finished-job counts are written by the lock keeper's thread, and
a flow hand-off a finish wrote is applied by a thread of its own (`_apply_off_loop`).

Each job is an `Attempt` registered with the lock keeper, as a sync job is: the keeper renews
its lock and flags it when its job was cancelled (or recovered as stalled); the attempt's cancel
callback then cancels the job's coroutine at once (no grace period: a coroutine
stops at its next ``await``), and its outcome is discarded. ``job.is_cancelled()`` works as in a
sync processor. A job's ``timeout`` is enforced on the loop itself (`within`).
When the process dies the locks expire and the stalled sweep sends the jobs back to waiting; a
message taken but not yet started goes back through the unstarted-job sweep.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from celery import signals

from coordinator.connection import connect_async
from coordinator.errors import JobTimeoutError
from coordinator.models import Job, QueueConfig
from coordinator.registry.aio import AsyncRegistry
from coordinator.registry.calls import step
from coordinator.runtime.control import Attempt
from coordinator.runtime.task import JobRunner, completed, discarded, failed, log, log_fields
from coordinator.runtime.task_events import TaskEvents
from coordinator.settings import Settings

AsyncProcessor = Callable[[Job], Awaitable[Any]]
T = TypeVar("T")

#: Most messages the own consumer takes in one round trip.
TAKE_BATCH = 50
#: Pause of the own consumer after finding no message: from the first to the longest.
IDLE_MIN_S = 0.005
IDLE_MAX_S = 0.1
_log = logging.getLogger(__name__)


def is_async(handler: Callable[..., Any] | None) -> bool:
    """Whether ``handler`` is an ``async def`` processor."""
    return inspect.iscoroutinefunction(handler)


async def within(call: Awaitable[T], limit_s: float | None) -> T:
    """Await ``call``; past ``limit_s`` (None: no limit) it is cancelled and `JobTimeoutError`
    raised (`asyncio.timeout`; on Python 3.10, `asyncio.wait`)."""
    if limit_s is None:
        return await call
    if sys.version_info >= (3, 11):
        try:
            async with asyncio.timeout(limit_s) as deadline:
                return await call
        except TimeoutError:
            if deadline.expired():
                raise JobTimeoutError(f"timeout: the job ran past its limit of {limit_s} s") from None
            raise
    task = asyncio.ensure_future(call)
    try:
        done, _ = await asyncio.wait({task}, timeout=limit_s)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise JobTimeoutError(f"timeout: the job ran past its limit of {limit_s} s")
    return task.result()


class AsyncJobWriter:
    """`Job.update_progress` and `Job.log` of a job running on the loop: each write is sent by
    a task of the loop, returned to the caller to ``await`` (or not: it is awaited before the
    job's outcome is recorded). Bad progress raises at the call, as for sync jobs."""

    def __init__(self, registry: AsyncRegistry) -> None:
        self._registry = registry
        self.pending: set[asyncio.Task[Any]] = set()

    def update_progress(self, queue: str, job_id: str, token: int | None, progress: Any) -> asyncio.Task[Any]:
        return self._send(self._registry.ops.update_progress(queue, job_id, token, progress))

    def add_log(self, queue: str, job_id: str, line: str) -> asyncio.Task[Any]:
        return self._send(self._registry.ops.add_log(queue, job_id, line))

    def _send(self, op: Any) -> asyncio.Task[Any]:
        first, _ = step(op, None, None)  # validation runs now, in the caller
        task = asyncio.get_running_loop().create_task(self._registry.run(op, first))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)
        return task


class AsyncRunner:
    """The event-loop thread of one worker process and the jobs running on it."""

    def __init__(self, runner: JobRunner, settings: Settings, concurrency: int) -> None:
        self.runner = runner
        self.settings = settings
        self.concurrency = concurrency
        self.own_queues: set[str] = set()
        """Queues whose messages the loop takes itself (`consume`), not Celery's consumer."""
        self._slots = threading.BoundedSemaphore(concurrency)
        self._loop = asyncio.new_event_loop()
        self._running: dict[tuple[str, str], Attempt] = {}
        self._active = 0
        """Jobs of this process from their claim to their recorded outcome."""
        self._freed = asyncio.Event()
        self._stopping = False
        self._consumers: list[concurrent.futures.Future[None]] = []
        self._registry = AsyncRegistry(connect_async(settings), runner.registry.ops)
        self._off_loop = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="jqc-async-off-loop")
        """Runs what the loop must not wait for: flow hand-offs, Celery task events."""
        self.events = TaskEvents(self._off_loop)
        self._apply_off_loop(runner.registry.ops)
        self.pid = os.getpid()
        self._thread = threading.Thread(target=self._serve, name="jqc-async-jobs", daemon=True)
        self._thread.start()
        # a warm shutdown lets the running jobs end, as Celery does for its own tasks
        signals.worker_shutdown.connect(self._drain_on_shutdown, weak=False)
        signals.worker_ready.connect(self._on_worker_ready, weak=False)

    def _apply_off_loop(self, ops: Any) -> None:
        """A flow hand-off written by a call made on the loop is applied by the off-loop thread
        (blocking calls, possibly many); elsewhere, at once as before. It is in Redis already:
        if this process dies first, the flow sweep applies it (`flows.handoff`)."""
        apply = ops.on_handoff
        if apply is None:
            return

        def on_handoff(queue: str, field: str, entry: str) -> None:
            if threading.current_thread() is self._thread:
                self._off_loop.submit(apply, queue, field, entry)
            else:
                apply(queue, field, entry)

        ops.on_handoff = on_handoff

    def _drain_on_shutdown(self, **_: Any) -> None:
        self._stopping = True  # the own consumers take nothing more
        if self._active:
            log.info("waiting for %d running async jobs", self._active)
        self.drain(timeout=None)
        self._off_loop.submit(self.events.close)
        self._off_loop.shutdown(wait=True)
        self.runner.locks.flush_counts()

    def _on_worker_ready(self, sender: Any = None, **_: Any) -> None:
        self.events.attach(sender)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    # ----------------------------------------------------------------------------- Celery side

    def submit(self, handler: AsyncProcessor, queue: str, job_id: str, token: int, worker_id: str) -> None:
        """Claim the job and start its coroutine; waits (holding the next message back) while
        ``concurrency`` jobs run."""
        self._slots.acquire()
        try:
            claimed = self.runner.registry.run(self.runner.claim_op(queue, job_id, token, worker_id))
        except BaseException:
            self._slots.release()
            raise
        if claimed is None:
            self._slots.release()
            return
        asyncio.run_coroutine_threadsafe(self._start(handler, claimed, token, worker_id), self._loop)

    def cancel_job(self, queue: str, job_id: str, reason: str = "cancelled") -> bool:
        """Ask a running job of this process to stop (from any thread), as the lock keeper does
        when its job was cancelled: its coroutine is cancelled and its outcome not recorded."""
        attempt = self._running.get((queue, job_id))
        return attempt is not None and attempt.request_stop(reason)

    def consume(self, queue: str, handler: AsyncProcessor, worker_id: str) -> None:
        """Start the loop's own consumer of ``queue`` (Redis broker only; see the module docstring)."""
        self.own_queues.add(queue)
        self._consumers.append(asyncio.run_coroutine_threadsafe(self._consume(queue, handler, worker_id), self._loop))

    def drain(self, timeout: float | None) -> None:
        """Wait up to ``timeout`` s (None: as long as it takes) for the running jobs to finish."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._active and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.05)

    @property
    def active(self) -> int:
        """Jobs of this process from their claim to their recorded outcome."""
        return self._active

    # ----------------------------------------------------------------------------- loop side

    async def _start(self, handler: AsyncProcessor, claimed: tuple[Job, QueueConfig], token: int,
                     worker_id: str) -> None:
        self._active += 1
        try:
            await self._run(handler, *claimed, token, worker_id)
        finally:
            self._active -= 1
            self._slots.release()
            self._freed.set()

    async def _consume(self, queue: str, handler: AsyncProcessor, worker_id: str) -> None:
        idle_s = IDLE_MIN_S
        while not self._stopping:
            reserved = self._reserve(TAKE_BATCH)
            if not reserved:
                self._freed.clear()
                if not self._reserve(0):  # a slot freed between the two looks
                    await self._freed.wait()
                continue
            try:
                taken = await self._registry.run(self._registry.ops.take(queue, worker_id, reserved))
            except Exception:  # Redis away for a moment: try again shortly
                _log.warning("async consumer of %s could not take messages", queue, exc_info=True)
                taken = []
                idle_s = IDLE_MAX_S
            for _ in range(reserved - len(taken)):
                self._slots.release()
            if not taken:
                await asyncio.sleep(idle_s)
                idle_s = min(IDLE_MAX_S, idle_s * 2)
                continue
            idle_s = IDLE_MIN_S
            await self._start_taken(queue, handler, worker_id, taken)

    def _reserve(self, most: int) -> int:
        """Take up to ``most`` free slots without waiting; with 0, whether any slot is free."""
        if most == 0:
            if self._slots.acquire(blocking=False):
                self._slots.release()
                return 1
            return 0
        count = 0
        while count < most and self._slots.acquire(blocking=False):
            count += 1
        return count

    async def _start_taken(self, queue: str, handler: AsyncProcessor, worker_id: str,
                           taken: list[tuple[str, str, int]]) -> None:
        """Claim the taken messages' jobs at once, ack the messages, and start the jobs' coroutines."""
        claims = await asyncio.gather(
            *(self._registry.run_batched(self.runner.claim_op(queue, job_id, token, worker_id))
              for _, job_id, token in taken),
            return_exceptions=True,
        )
        try:
            await self._registry.run(self._registry.ops.ack([tag for tag, _, _ in taken]))
        except Exception:  # the unstarted-job sweep checks these entries against the jobs' tokens
            _log.warning("could not ack %d taken messages", len(taken), exc_info=True)
        for (_, job_id, token), claimed in zip(taken, claims):
            if isinstance(claimed, tuple):
                self.events.received(claimed[0], token)  # no Celery request had this message
                self._loop.create_task(self._start(handler, claimed, token, worker_id))
                continue
            if isinstance(claimed, BaseException):
                _log.warning("could not start job %s/%s: %s", queue, job_id, claimed)
            self._slots.release()
            self._freed.set()

    async def _run(self, handler: AsyncProcessor, job: Job, config: QueueConfig, token: int,
                   worker_id: str) -> None:
        writer = AsyncJobWriter(self._registry)
        job._registry = writer
        started = time.monotonic()
        task = asyncio.current_task()
        assert task is not None
        attempt = Attempt(job.queue, job.id, token, worker=worker_id,  # the timeout: `within`
                          leases=self.runner.registry.ops.lease_keys(job.queue, job.id, job.options.group,
                                                                     job.options.limits))
        job._attempt = attempt
        attempt.add_cancel_callback(lambda _: self._cancel_task(attempt, task))
        key = (job.queue, job.id)
        self._running[key] = attempt
        self.runner.locks.add(attempt)
        verbose = log.isEnabledFor(logging.INFO)  # per-job lines cost nothing when nobody reads INFO
        if verbose:
            log.info("job started", extra=log_fields(job, started))
        try:
            try:
                try:
                    value = await within(handler(job), job.options.timeout)
                finally:
                    attempt.leave_handler()
                outcome = completed(job, value)
            except asyncio.CancelledError:
                if not attempt.is_cancelled():
                    raise  # the loop is going down; the lock expires
                discarded(job, attempt, started)
                self.events.revoked(job, token)
                return
            except Exception as exc:
                if not attempt.claim_outcome() or attempt.is_cancelled():
                    discarded(job, attempt, started)
                    return
                outcome = failed(job, exc, self.settings.default_max_retries)
                value = exc
            else:
                if not attempt.claim_outcome():
                    discarded(job, attempt, started)
                    return
            if writer.pending:
                await asyncio.gather(*writer.pending, return_exceptions=True)
            if not await self._registry.run_batched(self.runner.record_op(job, token, outcome, started, verbose)):
                return
            self.runner.locks.note(worker_id, failed=outcome.kind != "completed")
            if outcome.kind == "completed":
                self.events.succeeded(job, token, value, time.monotonic() - started)
                await self._registry.run_batched(self.runner.trim_op(job, config))
            else:
                self.events.failed(job, token, value, outcome.stack, retry=outcome.kind == "retry")
        finally:
            self._running.pop(key, None)
            self.runner.locks.remove(attempt)

    def _cancel_task(self, attempt: Attempt, task: asyncio.Task[Any]) -> None:
        """The attempt's cancel callback (from the keeper's thread): cancel the job's coroutine
        while the processor runs."""
        if attempt.in_handler:
            self._loop.call_soon_threadsafe(task.cancel)
