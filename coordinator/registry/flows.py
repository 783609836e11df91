"""The registry's writes and reads of flow records: waiting jobs, dependency edges, hand-offs,
batches. Each write is one script of `lua/flow_*.lua` on one queue's (or one batch's) slot, so
flows spanning queues stay correct on Redis Cluster: a finished job's outcome crosses to its
waiter's slot through the flow box (`coordinator/flows/handoff.py`), never in one script.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from redis.client import Pipeline
from redis.cluster import RedisCluster

from coordinator.flows import records as rec
from coordinator.keys import STATE_INDEXES
from coordinator.registry.registry import BATCH_SIZE, NewJob, Registry, now_ms
from coordinator.registry.replies import interpret_reply

#: Dependency refs per call when a waiter with many is written (a wide fan's parent).
WAITER_REFS_PER_CALL = 1000


class FlowRegistry:
    """Flow writes and reads over the job registry of one prefix."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.client = registry.client
        self.keys = registry.keys
        self.scripts = registry.scripts

    # ----------------------------------------------------------------------------- writes

    @property
    def on_cluster(self) -> bool:
        return isinstance(self.client, RedisCluster)

    def add_waiter(self, queue: str, job: NewJob, refs: list[str], pipe: Pipeline | None = None) -> bool:
        """Write a job in waiting_children, waiting for ``refs``; False if its id exists. With
        ``pipe`` (a MULTI), the call is only queued and True returned."""
        qk = self.registry.queue_keys(queue)
        opts = job.options
        args: list[Any] = [now_ms(), job.id, job.name, job.data_json, opts.model_dump_json(exclude_defaults=True),
                           opts.priority, "" if opts.timeout is None else opts.timeout, job.trace_id,
                           opts.max_retries, self.registry.events_max_len, *refs]
        keys = [qk.meta, qk.index("waiting_children"), qk.events, qk.job(job.id), qk.pending(job.id),
                qk.children(job.id)]
        if len(refs) > WAITER_REFS_PER_CALL and pipe is None and not self.client.exists(qk.job(job.id)):
            # a wide fan: the refs go in first, in chunks, so no single call holds Redis for long;
            # the waiter does not exist (no hand-off applies) until the script writes its record
            head, refs = refs[:-WAITER_REFS_PER_CALL], refs[-WAITER_REFS_PER_CALL:]
            del args[10:]
            args += refs
            for start in range(0, len(head), WAITER_REFS_PER_CALL):
                chunk = head[start : start + WAITER_REFS_PER_CALL]
                sets = self.client.pipeline(transaction=True)
                sets.sadd(qk.pending(job.id), *chunk)
                sets.sadd(qk.children(job.id), *chunk)
                sets.execute()
        if pipe is not None:
            self.scripts.flow_add_waiter(keys=keys, args=args, client=pipe)
            return True
        return interpret_reply("flow_add_waiter", self.scripts.flow_add_waiter(keys=keys, args=args), queue)

    def depend(self, queue: str, job_ids: list[str], waiter_ref: str, policy: str,
               pipe: Pipeline | None = None) -> list[int]:
        """Register a waiter on jobs of ``queue`` (batches of BATCH_SIZE); per job 0 missing,
        1 registered, 2 already finished (a hand-off was written). With ``pipe`` (a MULTI), the
        calls are only queued and [] returned."""
        qk = self.registry.queue_keys(queue)
        out: list[int] = []
        for start in range(0, len(job_ids), BATCH_SIZE):
            batch = job_ids[start : start + BATCH_SIZE]
            keys = [qk.flowbox]
            for job_id in batch:
                keys += [qk.job(job_id), qk.dependents(job_id)]
            if pipe is not None:
                self.scripts.flow_depend(keys=keys, args=[waiter_ref, policy, now_ms(), *batch], client=pipe)
            else:
                out += self.scripts.flow_depend(keys=keys, args=[waiter_ref, policy, now_ms(), *batch])
        return out

    def settle(self, queue: str, waiter_id: str, items: list[tuple[str, str, str, str]]) -> tuple[str, bool, bool]:
        """Apply (ref, outcome, value, policy) items to a waiting job; see `lua/flow_settle.lua`.
        Returns the waiter's state ("gone" if missing), whether it handed on its own failure,
        whether it left waiting_children."""
        qk = self.registry.queue_keys(queue)
        args: list[Any] = [waiter_id, now_ms(), *self.registry._dispatch_args(queue), self.registry.events_max_len]
        for item in items:
            args += item
        state, handed, left = self.scripts.flow_settle(
            keys=[qk.job(waiter_id), qk.pending(waiter_id), qk.child_values(waiter_id),
                  qk.child_failures(waiter_id), qk.index("waiting_children"), qk.index("waiting"),
                  qk.index("failed"), qk.parked, qk.meta, qk.events, qk.dependents(waiter_id), qk.flowbox,
                  *self.registry.broker_keys(qk), qk.index("cancelled")],
            args=args,
        )
        if left and state == "waiting" and self.registry.after_dispatch is not None:
            self.registry.after_dispatch(queue)
        return state, handed == 1, left == 1

    def rearm(self, queue: str, waiter_id: str, ref: str) -> int:
        """A dependency runs again: the waiter waits for it again; see `lua/flow_rearm.lua`."""
        qk = self.registry.queue_keys(queue)
        return int(self.scripts.flow_rearm(
            keys=[qk.job(waiter_id), qk.pending(waiter_id), qk.child_failures(waiter_id), qk.index("failed"),
                  qk.index("waiting_children"), qk.events],
            args=[waiter_id, ref, now_ms(), self.registry.events_max_len],
        ))

    def release_holds(self, refs: list[str]) -> None:
        """The waiter of these jobs left waiting_children: retention may trim them again."""
        pipe = self.client.pipeline(transaction=False)
        for ref in refs:
            if not rec.is_batch_ref(ref):
                queue, job_id = rec.split_job_ref(ref)
                pipe.hincrby(self.registry.queue_keys(queue).job(job_id), "hold", -1)
        pipe.execute()

    def remove_jobs(self, refs: list[tuple[str, str]]) -> int:
        """Remove jobs (finished or cancelled) with their logs and flow records; one MULTI per
        queue (one slot). Returns how many existed."""
        by_queue: dict[str, list[str]] = {}
        for queue, job_id in refs:
            by_queue.setdefault(queue, []).append(job_id)
        removed = 0
        for queue, job_ids in by_queue.items():
            qk = self.registry.queue_keys(queue)
            pipe = self.client.pipeline(transaction=True)
            for job_id in job_ids:
                for state in STATE_INDEXES:
                    pipe.zrem(qk.index(state), job_id)
                pipe.delete(qk.job(job_id))
                pipe.delete(qk.logs(job_id), *qk.flow_keys(job_id))
            replies = pipe.execute()
            per = len(STATE_INDEXES) + 2
            removed += sum(replies[i * per + len(STATE_INDEXES)] for i in range(len(job_ids)))
        return removed

    # ----------------------------------------------------------------------------- hand-offs

    def handoffs_of(self, queue: str, job_id: str) -> list[tuple[str, dict[str, Any]]]:
        """The flow box entries a job's finish (or registration) wrote, as (field, entry)."""
        box = self.registry.queue_keys(queue).flowbox
        return [(field, json.loads(raw)) for field, raw in self.client.hscan_iter(box, match=f"{job_id}:*")]

    def handoffs_older_than(self, queue: str, age_ms: int) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every flow box entry older than ``age_ms`` (the sweep of hand-offs a process left)."""
        cutoff = now_ms() - age_ms
        for field, raw in self.client.hscan_iter(self.registry.queue_keys(queue).flowbox, count=500):
            entry = json.loads(raw)
            if entry[rec.ENTRY_TIME] <= cutoff:
                yield field, entry

    def ack(self, queue: str, field: str) -> None:
        self.client.hdel(self.registry.queue_keys(queue).flowbox, field)

    # ----------------------------------------------------------------------------- batches

    def open_batch(self, batch_id: str, on_complete: str, on_success: str, parent: str) -> None:
        bk = self.keys.batch(batch_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(bk.meta, mapping={rec.TOTAL: 0, rec.SUCCEEDED: 0, rec.FAILED: 0, rec.ON_COMPLETE: on_complete,
                                    rec.ON_SUCCESS: on_success, rec.PARENT: parent, rec.CREATED: now_ms()})
        pipe.sadd(bk.pending, rec.SEAL)
        pipe.execute()

    def add_to_batch(self, batch_id: str, refs: list[str]) -> bool:
        """Count members in a batch before they are enqueued; False if it is done already."""
        bk = self.keys.batch(batch_id)
        return interpret_reply("flow_batch_add", self.scripts.flow_batch_add(keys=[bk.meta, bk.pending, bk.members],
                                                                             args=refs), batch_id)

    def settle_batch(self, batch_id: str, items: list[tuple[str, str, str]]) -> list[str]:
        """Apply (ref, outcome, value) items to a batch; see `lua/flow_batch_settle.lua`."""
        bk = self.keys.batch(batch_id)
        args: list[Any] = [now_ms()]
        for item in items:
            args += item
        return list(self.scripts.flow_batch_settle(keys=[bk.meta, bk.pending, bk.failures], args=args))

    def take_batch_members(self, batch_id: str) -> list[str]:
        """The members of a done batch, to release their holds: returned to the first caller only
        (flag ``released`` in its meta), so a replayed hand-off never releases a hold twice."""
        bk = self.keys.batch(batch_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.hsetnx(bk.meta, rec.RELEASED, "1")
        pipe.smembers(bk.members)
        first, members = pipe.execute()
        return sorted(members) if first else []

    def batch_fields(self, batch_id: str) -> tuple[dict[str, str], int, dict[str, str], list[str]]:
        """A batch's meta hash, pending count (without the seal), failures and members."""
        bk = self.keys.batch(batch_id)
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(bk.meta)
        pipe.smembers(bk.pending)
        pipe.hgetall(bk.failures)
        pipe.smembers(bk.members)
        meta, pending, failures, members = pipe.execute()
        return meta, len(pending - {rec.SEAL}), failures, sorted(members)

    # ----------------------------------------------------------------------------- reads

    def job_flow_fields(self, queue: str, job_id: str
                        ) -> tuple[set[str], dict[str, str], dict[str, str], dict[str, str]]:
        """A job's dependency refs, completed values, failures and its waiters (ref -> policy)."""
        qk = self.registry.queue_keys(queue)
        pipe = self.client.pipeline(transaction=False)
        pipe.smembers(qk.children(job_id))
        pipe.hgetall(qk.child_values(job_id))
        pipe.hgetall(qk.child_failures(job_id))
        pipe.hgetall(qk.dependents(job_id))
        children, values, failures, dependents = pipe.execute()
        return children, values, failures, dependents

    def children_of(self, refs: list[tuple[str, str]]) -> list[set[str]]:
        """The dependency refs of each (queue, job id), in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for queue, job_id in refs:
            pipe.smembers(self.registry.queue_keys(queue).children(job_id))
        return list(pipe.execute())

    def states_and_waiters(self, refs: list[tuple[str, str]]) -> list[tuple[str | None, dict[str, str]]]:
        """The state and the waiters (ref -> policy) of each (queue, job id); one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for queue, job_id in refs:
            qk = self.registry.queue_keys(queue)
            pipe.hget(qk.job(job_id), "state")
            pipe.hgetall(qk.dependents(job_id))
        replies = pipe.execute()
        return list(zip(replies[0::2], replies[1::2]))

    def states(self, refs: list[tuple[str, str]]) -> list[str | None]:
        """The state of each (queue, job id), None where there is no such job; one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for queue, job_id in refs:
            pipe.hget(self.registry.queue_keys(queue).job(job_id), "state")
        return list(pipe.execute())
