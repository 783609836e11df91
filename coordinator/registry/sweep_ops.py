"""The workers' sweeps as sans-IO operations (see `calls`): due delayed jobs, parked jobs,
stalled jobs, stranded messages, old metrics."""

from __future__ import annotations

import time
from typing import Any

from coordinator.clock import minute_of, now_ms
from coordinator.dispatch import Dispatch, parse_delivery_tag
from coordinator.metrics import stale_minute_fields
from coordinator.models import RateLimit
from coordinator.registry.calls import Batch, Op, Script, cmd
from coordinator.registry.ops import BATCH_SIZE, RegistryOps


class SweepOps:
    """Sweep operations over the registry operations of one prefix."""

    def __init__(self, ops: RegistryOps) -> None:
        self.ops = ops

    def promote_due(self, queue: str) -> Op[int]:
        """Move delayed jobs that are due to waiting (a worker's periodic sweep)."""
        due = yield cmd("zrangebyscore", self.ops.queue_keys(queue).index("delayed"), "-inf", now_ms(),
                        start=0, num=BATCH_SIZE)
        return (yield from self.ops.promote_ids(queue, due, force=False)) if due else 0

    def release_parked(self, queue: str, limiter: RateLimit | None) -> Op[int]:
        """Dispatch parked jobs whose hold is over (queue resumed, rate-limit window passed)."""
        ops = self.ops
        qk = ops.queue_keys(queue)
        count = BATCH_SIZE if limiter is None else min(BATCH_SIZE, limiter.max)
        due = yield cmd("zrangebyscore", qk.parked, "-inf", now_ms(), start=0, num=count)
        if not due:
            return 0
        return (yield Script(
            "release",
            [qk.parked, qk.meta, qk.limiter, *ops.broker_keys(qk), *(qk.job(job_id) for job_id in due)],
            [now_ms(), *ops.dispatch_args(queue), limiter.max if limiter else 0,
             limiter.duration if limiter else 0, *due],
        ))

    def recover_stalled(self, queue: str, max_stalled_count: int) -> Op[int]:
        """Send active jobs whose lock expired back to waiting (or fail them); see the script."""
        ops = self.ops
        qk = ops.queue_keys(queue)
        active = yield cmd("zrange", qk.index("active"), 0, -1)
        if not active:
            return 0
        locked = yield Batch([cmd("exists", qk.lock(job_id)) for job_id in active])
        stalled = [job_id for job_id, held in zip(active, locked) if not held]
        recovered = 0
        for start in range(0, len(stalled), BATCH_SIZE):
            batch = stalled[start : start + BATCH_SIZE]
            keys = [qk.index("active"), qk.index("waiting"), qk.index("failed"), qk.parked, qk.meta,
                    qk.events, qk.metrics, *ops.broker_keys(qk), qk.flowbox]
            for job_id in batch:
                keys += [qk.job(job_id), qk.lock(job_id), qk.dependents(job_id)]
            recovered += yield Script(
                "recover_stalled", keys,
                [now_ms(), max_stalled_count, *ops.dispatch_args(queue), ops.events_max_len,
                 minute_of(now_ms()), *batch],
            )
        return recovered

    def hold_unacked(self, delivery_tags: list[str]) -> Op[None]:
        """A live worker still holds these messages (prefetched or running): their time in
        kombu's unacked index becomes now (never adding one that was acked meanwhile)."""
        now = time.time()
        yield cmd("zadd", self.ops.keys.unacked_index, {tag: now for tag in delivery_tags}, xx=True)

    def recover_unstarted(self, queue: str, older_than_ms: int) -> Op[list[str]]:
        """Re-dispatch waiting jobs whose message a worker fetched and never started (it died
        in between); see `lua/recover_orphans.lua`.

        Reads kombu's unacked index (Redis broker only): a live worker marks the messages it
        holds (prefetched or running) every third of a lock duration (`hold_unacked`), so an
        unacked message unmarked for ``older_than_ms`` whose job is still waiting with the same
        token is stranded. Its unacked entry is removed once the job has a new dispatch.
        """
        ops = self.ops
        qk = ops.queue_keys(queue)
        cutoff_s = (now_ms() - older_than_ms) / 1000
        candidates: dict[str, Dispatch] = {}
        for tag in (yield cmd("zrangebyscore", ops.keys.unacked_index, "-inf", cutoff_s)):
            dispatch = parse_delivery_tag(tag, qk.celery_queue)
            if dispatch is not None:
                candidates[tag] = dispatch
        recovered: list[str] = []
        items = list(candidates.items())
        for start in range(0, len(items), BATCH_SIZE):
            batch = items[start : start + BATCH_SIZE]
            keys = [qk.parked, qk.meta, qk.events, *ops.broker_keys(qk), *(qk.job(job_id) for _, (job_id, _) in batch)]
            args: list[Any] = [now_ms(), *ops.dispatch_args(queue), ops.events_max_len]
            for _, (job_id, token) in batch:
                args += [job_id, token]
            moved = set((yield Script("recover_orphans", keys, args)))
            stranded = [tag for tag, (job_id, _) in batch if job_id in moved]
            if stranded:
                yield Batch([cmd("hdel", ops.keys.unacked, *stranded),
                             cmd("zrem", ops.keys.unacked_index, *stranded)])
            recovered += sorted(moved)
        return recovered

    def trim_metrics(self, queue: str) -> Op[None]:
        """Delete the queue's per-minute metrics older than a day (see `coordinator.metrics`)."""
        key = self.ops.queue_keys(queue).metrics
        stale = stale_minute_fields((yield cmd("hkeys", key)))
        if stale:
            yield cmd("hdel", key, *stale)
