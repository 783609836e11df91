"""Flows and DAGs: write a tree of jobs across queues (`add_flow`), a job that depends on
existing jobs (`depends_on`), read a flow back, and the cascades (cancel, retry, remove).

A flow is written bottom-up, deepest level first: children are enqueued and then registered on
their parent (`flow_depend.lua`), and a parent is written, in state waiting_children, after its
children. A flow of up to `ATOMIC_FLOW_JOBS` jobs on a single Redis is one MULTI of those
scripts: all of it or nothing. A larger flow (or any on Redis Cluster, where one transaction
cannot span slots) is written in batches of `BATCH_SIZE` jobs per script, so Redis is never held
for long: a crash part way leaves children that ran without a parent (their hand-offs expire),
never a parent waiting for a child that does not exist. Children that finish before their parent
is written keep their hand-off in the flow box; `add_flow` applies those at the end.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from redis.client import Pipeline

from coordinator.dedup import refuse_in_flow
from coordinator.errors import DependencyCycleError, DependencyNotFoundError, FlowError, JobNotFoundError
from coordinator.flows import records as rec
from coordinator.flows.handoff import HandOff
from coordinator.flows.models import FlowJob, FlowNode
from coordinator.models import Job, JobOptions, JobState
from coordinator.registry import NewJob, Registry
from coordinator.registry.codec import job_from_hash
from coordinator.registry.flows import FlowRegistry
from coordinator.registry.registry import BATCH_SIZE, now_ms
from coordinator.scheduler import JobScheduler
from coordinator.validation import check_job_id, check_queue_name

#: Largest flow written in one MULTI (all or nothing) on a single Redis.
ATOMIC_FLOW_JOBS = BATCH_SIZE
#: Most jobs a cycle check walks before it gives up and refuses the edge set.
MAX_CYCLE_WALK = 100_000
_NOT_STARTED = {JobState.WAITING.value, JobState.DELAYED.value, JobState.WAITING_CHILDREN.value}


@dataclass
class _Planned:
    """One node of a flow being written."""

    queue: str
    new: NewJob
    data: Any
    depth: int
    policy: str
    parent: _Planned | None
    children: list[_Planned] = field(default_factory=list)

    @property
    def ref(self) -> str:
        return rec.job_ref(self.queue, self.new.id)


class FlowProducer:
    """Writes flows and DAG edges through the registry; reads them back."""

    def __init__(self, registry: Registry, flows: FlowRegistry, jobs: JobScheduler, handoff: HandOff) -> None:
        self.registry = registry
        self.flows = flows
        self.jobs = jobs
        self.handoff = handoff

    # ----------------------------------------------------------------------------- flows

    def add_flow(self, root: FlowJob) -> FlowNode:
        """Write a flow tree; returns it as written (the root in waiting_children)."""
        now = now_ms()
        planned = self._plan(root, None, 0, now)
        every = [node for node in _walk(planned)]
        self._refuse_existing(every)
        atomic = len(every) <= ATOMIC_FLOW_JOBS and not self.flows.on_cluster
        pipe = self.registry.client.pipeline(transaction=True) if atomic else None
        for depth in range(max(node.depth for node in every), -1, -1):
            level = [node for node in every if node.depth == depth]
            self._write_level(level, pipe)
        if pipe is not None:
            replies = pipe.execute()
            if any(reply in (-1, 0) or (isinstance(reply, list) and 0 in reply) for reply in replies):
                raise FlowError("add_flow: a job of the flow was created by another caller meanwhile")
            if self.registry.after_dispatch is not None:  # a broker other than Redis: publish the outbox
                for queue in sorted({node.queue for node in every if not node.children}):
                    self.registry.after_dispatch(queue)
        else:
            for queue in sorted({node.queue for node in every if node.parent is not None}):
                self.handoff.sweep(queue, age_ms=0)  # children that finished before their parent existed
        return self._snapshot(planned, now)

    def _plan(self, flow: FlowJob, parent: _Planned | None, depth: int, now: int) -> _Planned:
        check_queue_name(flow.queue)
        opts = self.jobs.resolve_options(flow.queue, flow.options, {})
        refuse_in_flow(opts, "flow")
        node = _Planned(flow.queue, self.jobs.new_job(flow.queue, flow.data, flow.name, opts, now), flow.data,
                        depth, flow.on_failure, parent)
        node.children = [self._plan(child, node, depth + 1, now) for child in flow.children]
        return node

    def _refuse_existing(self, nodes: list[_Planned]) -> None:
        refs = [(node.queue, node.new.id) for node in nodes]
        if len(set(refs)) != len(refs):
            raise FlowError("add_flow: two jobs of the flow have the same queue and job_id")
        given = [(node.queue, node.new.id) for node in nodes if node.new.options.job_id]
        for (queue, job_id), state in zip(given, self.flows.states(given)):
            if state is not None:
                raise FlowError(f"add_flow: job {job_id!r} of queue {queue!r} exists already")

    def _write_level(self, level: list[_Planned], pipe: Pipeline | None) -> None:
        leaves: dict[str, list[_Planned]] = defaultdict(list)
        for node in level:
            if node.children:
                self.flows.add_waiter(node.queue, node.new, [child.ref for child in node.children], pipe)
            else:
                leaves[node.queue].append(node)
        for queue, nodes in leaves.items():
            if pipe is None:
                self.registry.enqueue(queue, [node.new for node in nodes])
            else:
                keys, args = self.registry.enqueue_call(queue, [node.new for node in nodes])
                self.registry.scripts.enqueue(keys=keys, args=args, client=pipe)
        edges: dict[tuple[str, str, str], list[str]] = defaultdict(list)
        for node in level:
            if node.parent is not None:
                edges[(node.queue, node.parent.ref, node.policy)].append(node.new.id)
        for (queue, parent_ref, policy), ids in edges.items():
            self.flows.depend(queue, ids, parent_ref, policy, pipe)

    def _snapshot(self, node: _Planned, now: int) -> FlowNode:
        if node.children:
            state = JobState.WAITING_CHILDREN
        else:
            state = JobState.DELAYED if node.new.due_ms else JobState.WAITING
        job = Job(id=node.new.id, queue=node.queue, name=node.new.name, data=node.data, options=node.new.options,
                  state=state, created_at=datetime.fromtimestamp(now / 1000, tz=timezone.utc),
                  trace_id=node.new.trace_id)
        return FlowNode(job=job, children=[self._snapshot(child, now) for child in node.children],
                        on_failure=node.policy if node.parent is not None else None)

    # ----------------------------------------------------------------------------- DAG edges

    def enqueue_with_dependencies(self, queue: str, data: Any, options: JobOptions | None, name: str | None,
                                  option_fields: dict[str, Any], depends_on: list[Any],
                                  policies: tuple[str, ...] = rec.POLICIES) -> Job:
        """Add a job that waits in waiting_children until every job of ``depends_on`` is done.
        Items are ``(queue, job id)`` or ``(queue, job id, policy)``; unknown jobs and cycles are
        refused before anything is written."""
        edges = [_edge(item, policies) for item in depends_on]
        if not edges:
            raise FlowError("depends_on: give at least one (queue, job id)")
        opts = self.jobs.resolve_options(queue, options, option_fields)
        refuse_in_flow(opts, "depends_on")
        new = self.jobs.new_job(queue, data, name, opts, now_ms())
        me = rec.job_ref(queue, new.id)
        refs = [rec.job_ref(q, job_id) for q, job_id, _ in edges]
        if len(set(refs)) != len(refs):
            raise FlowError("depends_on: a job is listed twice")
        if me in refs:
            raise DependencyCycleError(f"depends_on: {me} would depend on itself")
        for (q, job_id, _), state in zip(edges, self.flows.states([(q, job_id) for q, job_id, _ in edges])):
            if state is None:
                raise DependencyNotFoundError(q, job_id)
        if opts.job_id:
            existing = self.registry.get_job(queue, new.id)
            if existing is not None:
                return existing
        self._refuse_cycle(me, refs)
        if not self.flows.add_waiter(queue, new, refs):
            existing = self.registry.get_job(queue, new.id)
            if existing is not None:
                return existing
        by_queue: dict[tuple[str, str], list[str]] = defaultdict(list)
        for q, job_id, policy in edges:
            by_queue[(q, policy)].append(job_id)
        for (q, policy), ids in by_queue.items():
            for job_id, status in zip(ids, self.flows.depend(q, ids, me, policy)):
                if status == 2:
                    self.handoff.drain_job(q, job_id)
                elif status == 0:  # removed since it was checked
                    self.handoff.settle_job(me, rec.job_ref(q, job_id), "cancelled", "removed", policy)
        job = self.registry.get_job(queue, new.id)
        if job is None:
            raise JobNotFoundError(queue, new.id)
        return job

    def _refuse_cycle(self, me: str, refs: list[str]) -> None:
        """A new job closes a cycle only if it is reachable from its own dependencies."""
        seen: set[str] = set()
        frontier = [ref for ref in refs]
        while frontier:
            if me in frontier:
                raise DependencyCycleError(f"depends_on: {me} would depend on itself")
            fresh = [ref for ref in dict.fromkeys(frontier) if ref not in seen and not rec.is_batch_ref(ref)]
            seen.update(fresh)
            if len(seen) > MAX_CYCLE_WALK:
                raise DependencyCycleError(f"depends_on: more than {MAX_CYCLE_WALK} jobs upstream; refused")
            below = self.flows.children_of([rec.split_job_ref(ref) for ref in fresh])
            frontier = [ref for refs_below in below for ref in refs_below]

    # ----------------------------------------------------------------------------- reads

    def get_flow(self, queue: str, job_id: str) -> FlowNode | None:
        """The flow below a job (its children, theirs, ...) with current states; None if no job."""
        root = self.registry.get_job(queue, job_id)
        if root is None:
            return None
        top = FlowNode(job=root)
        level = [(top, rec.job_ref(queue, job_id))]
        while level:
            below = self.flows.children_of([rec.split_job_ref(ref) for _, ref in level])
            pairs = [(node, parent_ref, ref) for (node, parent_ref), refs in zip(level, below)
                     for ref in sorted(refs) if not rec.is_batch_ref(ref)]
            if not pairs:
                break
            jobs = self._read_nodes([(ref, parent_ref) for _, parent_ref, ref in pairs])
            level = []
            for (node, _, ref), (job, policy) in zip(pairs, jobs):
                if job is not None:
                    child = FlowNode(job=job, on_failure=policy)
                    node.children.append(child)
                    level.append((child, ref))
        return top

    def _read_nodes(self, refs: list[tuple[str, str]]) -> list[tuple[Job | None, str | None]]:
        client = self.registry.client
        pipe = client.pipeline(transaction=False)
        for ref, parent_ref in refs:
            q, job_id = rec.split_job_ref(ref)
            qk = self.registry.queue_keys(q)
            pipe.hgetall(qk.job(job_id))
            pipe.hget(qk.dependents(job_id), parent_ref)
        replies = pipe.execute()
        out: list[tuple[Job | None, str | None]] = []
        for (ref, _), fields, policy in zip(refs, replies[0::2], replies[1::2]):
            q, job_id = rec.split_job_ref(ref)
            out.append((job_from_hash(q, job_id, fields) if fields else None, policy))
        return out

    def children_values(self, queue: str, job_id: str) -> dict[str, Any]:
        _, values, _, _ = self.flows.job_flow_fields(queue, job_id)
        return {ref: json.loads(value) for ref, value in sorted(values.items())}

    def children_failures(self, queue: str, job_id: str) -> dict[str, str]:
        _, _, failures, _ = self.flows.job_flow_fields(queue, job_id)
        return dict(sorted(failures.items()))

    # ----------------------------------------------------------------------------- cascades

    def is_waiting_children(self, queue: str, job_id: str) -> bool:
        return self.flows.states([(queue, job_id)])[0] == JobState.WAITING_CHILDREN.value

    def cancel_below(self, queue: str, job_id: str, was_waiting_children: bool) -> list[str]:
        """After a job was cancelled: cancel its children (and theirs) that have not started and
        wait for nothing else. A cancelled job that was still waiting for its children lets
        retention trim the finished ones again (their hold). Returns the refs cancelled."""
        cancelled: list[str] = []
        level = [(rec.job_ref(queue, job_id), was_waiting_children)]
        while level:
            below = self.flows.children_of([rec.split_job_ref(ref) for ref, _ in level])
            held = sorted({(parent, ref) for (parent, waited), refs in zip(level, below) if waited for ref in refs})
            self.flows.release_holds(held)
            pairs = [(parent, ref) for (parent, _), refs in zip(level, below) for ref in sorted(refs)
                     if not rec.is_batch_ref(ref)]
            found = self.flows.states_and_waiters([rec.split_job_ref(ref) for _, ref in pairs])
            level = []
            for (parent, ref), (state, waiters) in zip(pairs, found):
                if state not in _NOT_STARTED or set(waiters) - {parent}:
                    continue  # started or finished, or another job waits for it too
                if self.registry.cancel(*rec.split_job_ref(ref)):
                    cancelled.append(ref)
                    level.append((ref, state == JobState.WAITING_CHILDREN.value))
        return cancelled

    def rearm_waiters(self, queue: str, job_id: str) -> None:
        """After a job was retried: its waiters that failed (or went on) without it wait again."""
        ref = rec.job_ref(queue, job_id)
        _, _, _, waiters = self.flows.job_flow_fields(queue, job_id)
        for waiter in waiters:
            if rec.is_batch_ref(waiter):
                continue
            wq, wid = rec.split_job_ref(waiter)
            if self.flows.rearm(wq, wid, ref) == 1:
                self.rearm_waiters(wq, wid)

    def remove_flow(self, queue: str, job_id: str) -> int:
        """Remove a job and every job below it (cancelling those not finished); refused while
        one of them runs. Returns the number of jobs removed."""
        tree = self.get_flow(queue, job_id)
        if tree is None:
            raise JobNotFoundError(queue, job_id)
        nodes = tree.walk()
        running = [f"{n.job.queue}:{n.job.id}" for n in nodes if n.job.state is JobState.ACTIVE]
        if running:
            raise FlowError(f"remove_flow: {', '.join(running)} running; cancel with terminate first")
        for node in nodes:
            if not node.job.state.is_final:
                self.registry.cancel(node.job.queue, node.job.id)
        return self.flows.remove_jobs([(node.job.queue, node.job.id) for node in nodes])


def _walk(node: _Planned) -> list[_Planned]:
    out = [node]
    for child in node.children:
        out += _walk(child)
    return out


def _edge(item: Any, policies: tuple[str, ...]) -> tuple[str, str, str]:
    if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
        raise FlowError(f"depends_on: {item!r} is not (queue, job id) or (queue, job id, policy)")
    if not isinstance(item[1], str):
        raise FlowError(f"depends_on: job id {item[1]!r} is not a string")
    queue, job_id = check_queue_name(item[0]), str(check_job_id(item[1]))
    policy = item[2] if len(item) == 3 else "fail"
    if policy not in policies:
        raise FlowError(f"depends_on: policy {policy!r} of {queue}:{job_id}: use one of {', '.join(policies)}")
    return queue, job_id, policy

