"""The workers' sweeps as sans-IO operations (see `calls`): due delayed jobs, parked jobs,
stalled jobs, stranded messages, old metrics."""

from __future__ import annotations

import json
import time
from typing import Any

from coordinator.clock import minute_of, now_ms
from coordinator.dispatch import Dispatch, delivery_tag, parse_delivery_tag, task_id
from coordinator.metrics import stale_minute_fields
from coordinator.models import RateLimit
from coordinator.registry.calls import Batch, Op, Script, cmd
from coordinator.registry.ops import BATCH_SIZE, RegistryOps

#: Broker list items read per LRANGE in `SweepOps.recover_lost`.
LIST_CHUNK = 1000
#: Jobs parked over a concurrency cap that one `SweepOps.release_capped` call looks at.
CAPPED_BATCH = 100


def _message_task_id(raw: str) -> str:
    """The Celery task id of a kombu message in a broker list ('' if it has none)."""
    try:
        headers = json.loads(raw).get("headers")
        return str(headers.get("id", "")) if isinstance(headers, dict) else ""
    except (ValueError, AttributeError):
        return ""


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

    def release_capped(self, queue: str, concurrency: int | None) -> Op[int]:
        """Dispatch jobs parked over a concurrency cap, oldest first, once each of their caps has
        a free slot (taken for them); see `lua/release_capped.lua`."""
        ops = self.ops
        qk = ops.queue_keys(queue)
        capped = yield cmd("zrange", qk.capped, 0, CAPPED_BATCH - 1)
        if not capped:
            return 0
        limits = [value.split(",") if value else []
                  for value in (yield Batch([cmd("hget", qk.job(job_id), "limits") for job_id in capped]))]
        names = sorted({name for job_limits in limits for name in job_limits})
        maxima = (yield from ops.limiter_maxima(names)) if names else {}
        keys = [qk.capped, qk.meta, qk.parked, *ops.broker_keys(qk)]
        args: list[Any] = [now_ms(), *ops.dispatch_args(queue), ops.lease_ms]
        for job_id, job_limits in zip(capped, limits):
            cap_keys, cap_args = ops.queue_cap(queue, job_id, concurrency)
            limit_keys, limit_args = ops.limiter_caps(queue, job_id, job_limits, maxima)
            keys += [qk.job(job_id), *cap_keys, *limit_keys]
            args += [job_id, len(cap_keys) + len(limit_keys), *cap_args, *limit_args]
        return (yield Script("release_capped", keys, args))

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
            keys += qk.group_keys
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
            keys = [qk.parked, qk.meta, qk.events, *ops.broker_keys(qk), *(qk.job(job_id) for _, (job_id, _) in batch),
                    qk.capped, qk.group_messages]
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

    def recover_lost(self, queue: str) -> Op[list[str]]:
        """Re-dispatch waiting jobs whose current message is nowhere: in no broker list and not
        unacked. kombu's Redis consumer has a popped message in flight (BRPOP answered, not yet
        in the unacked hash) almost all the time while a backlog waits; a worker killed then
        loses it. Run once a worker is known dead (Redis broker only): it reads the whole
        waiting index and broker lists. A message in flight to a live worker meanwhile gets a
        duplicate dispatch, which the token makes stale (never run twice)."""
        ops = self.ops
        if ops.outbox:
            return []
        qk = ops.queue_keys(queue)
        waiting = yield cmd("zrange", qk.index("waiting"), 0, -1)
        if not waiting:
            return []
        tokens = yield Batch([cmd("hget", qk.job(job_id), "token") for job_id in waiting])
        snapshot = [Dispatch(job_id, int(token)) for job_id, token in zip(waiting, tokens)
                    if token is not None and str(token).isdigit()]
        queued: set[str] = set()  # read after the snapshot: a job dispatched later is no candidate
        for key in qk.broker_lists:
            length = yield cmd("llen", key)
            for start in range(0, length, LIST_CHUNK):
                chunk = yield cmd("lrange", key, start, start + LIST_CHUNK - 1)
                queued.update(_message_task_id(raw) for raw in chunk)
        unqueued = [d for d in snapshot if task_id(*d) not in queued]
        if not unqueued:
            return []
        held = yield Batch([cmd("hexists", ops.keys.unacked, delivery_tag(qk.celery_queue, job_id, token))
                            for job_id, token in unqueued])
        lost = [d for d, unacked in zip(unqueued, held) if not unacked]
        recovered: list[str] = []
        for start in range(0, len(lost), BATCH_SIZE):
            batch = lost[start : start + BATCH_SIZE]
            keys = [qk.parked, qk.meta, qk.events, *ops.broker_keys(qk), *(qk.job(job_id) for job_id, _ in batch),
                    qk.capped, qk.group_messages]
            args: list[Any] = [now_ms(), *ops.dispatch_args(queue), ops.events_max_len]
            for job_id, token in batch:
                args += [job_id, token]
            recovered += sorted((yield Script("recover_orphans", keys, args)))
        return recovered

    def trim_metrics(self, queue: str) -> Op[None]:
        """Delete the queue's per-minute metrics older than a day (see `coordinator.metrics`)."""
        key = self.ops.queue_keys(queue).metrics
        stale = stale_minute_fields((yield cmd("hkeys", key)))
        if stale:
            yield cmd("hdel", key, *stale)
