"""The job registry in Redis: one hash per job, one sorted set per state, a stream of events.

Every state move is one Lua script (see `lua/`), so a crash at any point leaves each job in
exactly one state index. Reads are plain commands, pipelined into one round trip where possible.
The operations themselves are sans-IO (`ops`, `sweep_ops`); `Registry` runs them with redis-py,
`AsyncRegistry` (`aio`) with redis.asyncio.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import redis

from coordinator.clock import now_ms
from coordinator.models import Job, JobState, QueueConfig, QueueCounts, RateLimit, Retention, WorkerAction
from coordinator.registry.calls import Call, Op, execute_sync, run_sync
from coordinator.registry.ops import BATCH_SIZE, NewJob, RegistryOps, StartResult
from coordinator.registry.replies import Added
from coordinator.registry.scripts import Scripts
from coordinator.registry.sweep_ops import SweepOps

__all__ = ["BATCH_SIZE", "NewJob", "Registry", "StartResult", "now_ms"]

T = TypeVar("T")


def _dispatches(method: Callable[..., Any]) -> Callable[..., Any]:
    """Marks a write whose scripts may leave messages in an outbox: publish them right after."""

    @functools.wraps(method)
    def write_then_publish(self: Registry, queue: str, *args: Any, **kwargs: Any) -> Any:
        result = method(self, queue, *args, **kwargs)
        if self.after_dispatch is not None and result:
            self.after_dispatch(queue)
        return result

    return write_then_publish


class Registry:
    """Reads and atomic writes of the job registry of one prefix, run with redis-py."""

    def __init__(self, client: redis.Redis, prefix: str, events_max_len: int = 10_000,
                 finish_retry_s: float = 0.0, outbox: bool = False) -> None:
        self.client = client
        self.ops = RegistryOps(prefix, events_max_len, finish_retry_s, outbox)
        self.sweeps = SweepOps(self.ops)
        self.keys = self.ops.keys
        self.scripts = Scripts(client)
        self._seen_epoch: str | None = None
        #: Called with a queue name after a write that may have dispatched jobs (the outbox relay).
        self.after_dispatch: Callable[[str], object] | None = None

    @property
    def outbox(self) -> bool:
        return self.ops.outbox

    @property
    def events_max_len(self) -> int:
        return self.ops.events_max_len

    @property
    def on_handoff(self) -> Callable[[str, str, str], object] | None:
        """Called with (queue, flow box field, entry JSON) after a move that wrote a flow
        hand-off (`coordinator.flows.handoff`); held by the operations, so async runs call it too."""
        return self.ops.on_handoff

    @on_handoff.setter
    def on_handoff(self, callback: Callable[[str, str, str], object] | None) -> None:
        self.ops.on_handoff = callback

    def _dispatch_args(self, queue: str) -> list[str]:
        return self.ops.dispatch_args(queue)

    def enqueue_call(self, queue: str, jobs: list[NewJob]) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of one `lua/enqueue.lua` call (also queued in a flow's MULTI)."""
        return self.ops.enqueue_call(queue, jobs)

    # ----------------------------------------------------------------------------- executor

    def run(self, op: Op[T]) -> T:
        """Drive a sans-IO operation to its result with this client (see `calls`)."""
        return run_sync(self.execute, op)

    def execute(self, call: Call) -> Any:
        """Send one request and return its reply."""
        return execute_sync(self.client, self.scripts, call)

    # ----------------------------------------------------------------------------- outbox

    def queue_keys(self, queue: str) -> Any:
        return self.ops.queue_keys(queue)

    def broker_keys(self, qk: Any) -> list[str]:
        """Where the scripts write a dispatch's message (see `RegistryOps.broker_keys`)."""
        return self.ops.broker_keys(qk)

    def claim_outbox(self, queue: str, count: int, stale_ms: int) -> list[str]:
        return self.run(self.ops.claim_outbox(queue, count, stale_ms))

    def release_outbox(self, queue: str, messages: list[str]) -> None:
        """Forget messages the broker confirmed."""
        if messages:
            self.client.zrem(self.queue_keys(queue).relaying, *messages)

    # ----------------------------------------------------------------------------- queues

    def save_queue(self, config: QueueConfig) -> bool:
        """Create or update a queue; True if it was created."""
        created, epoch = self.run(self.ops.save_queue(config))
        self.epoch_lost(epoch)
        return created

    def epoch_lost(self, current: str | None) -> bool:
        """True when the epoch marker (`CoordinatorKeys.epoch`) this process first saw has gone or
        changed since: Redis lost the registry (restarted without persistence, flushed, evicted)."""
        if self._seen_epoch is None:
            self._seen_epoch = current
            return False
        return current != self._seen_epoch

    def queue_meta(self, queue: str) -> dict[str, str]:
        """The queue's meta hash; QueueNotFoundError if it was never created."""
        return self.run(self.ops.queue_meta(queue))

    def set_processor_name(self, queue: str, name: str) -> None:
        """Record the name of the queue's processor, so producers elsewhere default job names to it."""
        self.run(self.ops.set_processor_name(queue, name))

    def queue_names(self) -> list[str]:
        return self.run(self.ops.queue_names())

    def set_paused(self, queue: str, paused: bool) -> None:
        self.run(self.ops.set_paused(queue, paused))

    def delete_queue(self, queue: str) -> None:
        """Remove the queue's jobs, indexes, events, metrics, broker lists and meta."""
        self.run(self.ops.delete_queue(queue))

    # ----------------------------------------------------------------------------- jobs in

    def enqueue(self, queue: str, jobs: list[NewJob]) -> list[Added]:
        """Add jobs (each batch of BATCH_SIZE in one round trip); per job True if added, False
        where a job with that id existed, the standing job's id where its dedup key was held."""
        added: list[Added] = []
        for flags in self.enqueue_batches(queue, jobs):
            added.extend(flags)
        return added

    def enqueue_batches(self, queue: str, jobs: list[NewJob]) -> Iterator[list[Added]]:
        """`enqueue`, yielding each batch's flags in order. While the caller handles one batch's
        flags, the next batch already runs in Redis (sent from a helper thread), so the caller's
        Python work overlaps the scripts. A batch that fails raises, and no later batch is sent."""
        batches = [jobs[start : start + BATCH_SIZE] for start in range(0, len(jobs), BATCH_SIZE)]
        if len(batches) <= 1:
            yield from (self._enqueue_batch(queue, batch) for batch in batches)
        else:
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="jqc-enqueue") as sender:
                pending = sender.submit(self._enqueue_batch, queue, batches[0])
                for batch in batches[1:]:
                    flags = pending.result()
                    pending = sender.submit(self._enqueue_batch, queue, batch)
                    yield flags
                yield pending.result()
        if self.after_dispatch is not None:
            self.after_dispatch(queue)

    def _enqueue_batch(self, queue: str, jobs: list[NewJob]) -> list[Added]:
        return self.run(self.ops.enqueue_batch(queue, jobs))

    # ----------------------------------------------------------------------------- worker side

    def start(self, queue: str, job_id: str, token: int, worker_id: str, hostname: str,
              lock_ms: int, limiter: RateLimit | None, concurrency: int | None = None) -> StartResult:
        """Claim a received dispatch of a job; see `lua/start.lua` for the outcomes."""
        claim = self.run(self.ops.start(queue, job_id, token, worker_id, hostname, lock_ms, limiter, concurrency))
        if claim.job is not None:
            claim.job._registry = self
            claim.job._token = token
        return claim

    def renew_locks(self, attempts: Iterable[tuple[str, str, int, tuple[tuple[str, str], ...]]],
                    lock_ms: int) -> list[str]:
        """Renew the locks (and leases) of running attempts, given as (queue, job id, token,
        leases), in one round trip; per attempt "" if it still owns its job, else
        ``<state>:<reason>`` of the job."""
        return self.run(self.ops.renew_locks(attempts, lock_ms))

    def finish(self, queue: str, job_id: str, token: int, outcome: str, *, payload: str = "",
               stack: str = "", due_ms: int = 0, remove: bool = False, duration_ms: int = 0,
               group: str | None = None, limits: Iterable[str] = ()) -> bool:
        """End an attempt: ``completed`` (payload = result JSON), ``failed`` or ``retry``
        (payload = reason). False when this attempt no longer owns the job."""
        return self.run(self.ops.finish(queue, job_id, token, outcome, payload=payload, stack=stack,
                                        due_ms=due_ms, remove=remove, duration_ms=duration_ms,
                                        group=group, limits=limits))

    def update_progress(self, queue: str, job_id: str, token: int | None, progress: Any) -> bool:
        return self.run(self.ops.update_progress(queue, job_id, token, progress))

    def add_log(self, queue: str, job_id: str, line: str) -> None:
        self.run(self.ops.add_log(queue, job_id, line))

    def record_poison(self, queue: str, raw: bytes | str, reason: str) -> str:
        """Record a message that could not be run as a failed job; returns its id."""
        return self.run(self.ops.record_poison(queue, raw, reason))

    # ----------------------------------------------------------------------------- job control

    def cancel(self, queue: str, job_id: str, allow_active: bool = False, reason: str = "cancelled") -> bool:
        return self.run(self.ops.cancel(queue, job_id, allow_active, reason))

    def remove(self, queue: str, job_id: str) -> bool:
        """Delete a finished (completed, failed or cancelled) job with its logs; False if it is
        not finished (see `RegistryOps.remove`)."""
        return self.run(self.ops.remove(queue, job_id))

    @_dispatches
    def retry(self, queue: str, job_id: str) -> bool:
        return self.run(self.ops.retry(queue, job_id))

    @_dispatches
    def change_priority(self, queue: str, job_id: str, priority: int) -> bool:
        return self.run(self.ops.change_priority(queue, job_id, priority))

    @_dispatches
    def promote(self, queue: str, job_id: str) -> bool:
        """Move one delayed job to waiting now."""
        return self.run(self.ops.promote(queue, job_id))

    # ----------------------------------------------------------------------------- sweeps

    @_dispatches
    def promote_due(self, queue: str) -> int:
        """Move delayed jobs that are due to waiting (a worker's periodic sweep)."""
        return self.run(self.sweeps.promote_due(queue))

    @_dispatches
    def release_parked(self, queue: str, limiter: RateLimit | None) -> int:
        """Dispatch parked jobs whose hold is over (queue resumed, rate-limit window passed)."""
        return self.run(self.sweeps.release_parked(queue, limiter))

    @_dispatches
    def release_capped(self, queue: str, concurrency: int | None) -> int:
        """Dispatch jobs parked over a concurrency cap once their caps have room (`SweepOps`)."""
        return self.run(self.sweeps.release_capped(queue, concurrency))

    @_dispatches
    def release_groups(self, queue: str, rejoin: str = "") -> int:
        """Release grouped jobs round-robin while the queue's group window has room."""
        return self.run(self.ops.release_groups(queue, rejoin))

    @_dispatches
    def recover_stalled(self, queue: str, max_stalled_count: int) -> int:
        """Send active jobs whose lock expired back to waiting (or fail them); see the script."""
        return self.run(self.sweeps.recover_stalled(queue, max_stalled_count))

    def hold_unacked(self, delivery_tags: list[str]) -> None:
        """A live worker still holds these messages (prefetched or running): their time in
        kombu's unacked index becomes now (never adding one that was acked meanwhile)."""
        self.run(self.sweeps.hold_unacked(delivery_tags))

    def recover_unstarted(self, queue: str, older_than_ms: int) -> list[str]:
        """Re-dispatch waiting jobs whose message was fetched and never started (`SweepOps`)."""
        return self.run(self.sweeps.recover_unstarted(queue, older_than_ms))

    def recover_lost(self, queue: str) -> list[str]:
        """Re-dispatch waiting jobs whose message a dead worker had in flight (`SweepOps`)."""
        return self.run(self.sweeps.recover_lost(queue))

    def trim(self, queue: str, retention: Retention, keep_completed: int | None = None) -> int:
        """Remove finished jobs beyond the queue's retention (count and age), oldest first."""
        return self.run(self.ops.trim(queue, retention, keep_completed))

    def trim_metrics(self, queue: str) -> None:
        """Delete the queue's per-minute metrics older than a day (see `coordinator.metrics`)."""
        self.run(self.sweeps.trim_metrics(queue))

    def emit_worker_event(self, queue: str, action: WorkerAction, worker_id: str, **fields: Any) -> None:
        """Append a ``worker`` event (`WorkerAction`: crashed, restarted, gave_up) to the queue's stream."""
        self.run(self.ops.emit_worker_event(queue, action, worker_id, **fields))

    # ----------------------------------------------------------------------------- reads

    def get_job(self, queue: str, job_id: str) -> Job | None:
        return self.run(self.ops.get_job(queue, job_id))

    def get_job_after_event(self, queue: str, job_id: str) -> tuple[Job | None, str]:
        """The job, and the id of the queue's last event before it was read, in one round trip."""
        return self.run(self.ops.get_job_after_event(queue, job_id))

    def get_jobs(self, queue: str, states: Iterable[JobState | str], start: int = 0, end: int = -1,
                 asc: bool = False) -> list[Job]:
        """Jobs in the given states, newest first (or oldest first), sliced like a Redis range."""
        return self.run(self.ops.get_jobs(queue, states, start, end, asc))

    def counts(self, queue: str) -> QueueCounts:
        """Jobs per state: one ZCARD each, in one round trip."""
        return self.run(self.ops.counts(queue))

    def job_state_token(self, queue: str, job_id: str) -> tuple[str | None, str | None]:
        """The job's state and dispatch token (None, None for a job that does not exist)."""
        return self.run(self.ops.job_state_token(queue, job_id))

    def has_backlog(self, queue: str) -> bool:
        """Messages wait in the queue's broker lists and the queue is not paused."""
        return self.run(self.ops.has_backlog(queue))

    def last_event_id(self, queue: str) -> str:
        return self.run(self.ops.last_event_id(queue))

    def read_events(self, queue: str, after_id: str, block_ms: int | None, count: int = 500
                    ) -> list[tuple[str, dict[str, str]]]:
        """Events after ``after_id``, waiting up to ``block_ms`` for the first one."""
        return self.run(self.ops.read_events(queue, after_id, block_ms, count))

