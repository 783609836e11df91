"""Flows on the real Redis, jobs run in this process through the same claim and finish scripts as
a worker (`tests/flow_support.py`): trees across queues, the four failure policies, duplicate
completions, the waiting_children state in counts, listings and events."""

from __future__ import annotations

import json

import pytest

from coordinator import FlowError, FlowJob, Job, JobQueueCoordinator, JobState, UnrecoverableError
from tests.flow_support import execute, run_all, run_queue, take_messages


def part(job: Job) -> dict:
    if job.data.get("fail"):
        raise UnrecoverableError(f"part {job.data['part']} broke")
    return {"part": job.data["part"]}


def collect(seen: dict) -> callable:
    def parent(job: Job) -> str:
        seen[job.id] = {"values": job.children_values(), "failures": job.children_failures()}
        return f"saw {len(seen[job.id]['values'])}"
    return parent


@pytest.fixture
def queues(coord: JobQueueCoordinator) -> JobQueueCoordinator:
    for name in ("reports", "extract", "load"):
        coord.create_queue(name)
    return coord


def events_of(coord: JobQueueCoordinator, queue: str, job_id: str) -> list[dict]:
    return [f for _, f in coord._redis.xrange(coord.keys.for_queue(queue).events) if f.get("job_id") == job_id]


def test_parent_waits_in_waiting_children_then_reads_its_childrens_results(queues: JobQueueCoordinator) -> None:
    coord = queues
    node = coord.add_flow(FlowJob(queue="reports", name="monthly", data={"m": 11}, children=[
        FlowJob(queue="extract", data={"part": 1}),
        FlowJob(queue="load", data={"part": 2}),   # a child in another queue
    ]))
    parent = node.job
    assert parent.state is JobState.WAITING_CHILDREN and len(node.children) == 2
    assert coord.get_job("reports", parent.id).state is JobState.WAITING_CHILDREN
    assert coord.get_queue_status("reports").counts.waiting_children == 1
    assert [j.id for j in coord.get_jobs("reports", JobState.WAITING_CHILDREN)] == [parent.id]
    assert events_of(coord, "reports", parent.id)[0]["event"] == "waiting_children"
    assert take_messages(coord, "reports") == []  # nothing dispatched for the parent yet

    seen: dict = {}
    order = run_all(coord, {"extract": part, "load": part, "reports": collect(seen)})
    assert order[-1] == f"reports:{parent.id}" and len(order) == 3
    refs = {f"{c.job.queue}:{c.job.id}": c.job.data["part"] for c in node.children}
    assert seen[parent.id]["values"] == {ref: {"part": p} for ref, p in refs.items()}
    assert seen[parent.id]["failures"] == {}
    done = coord.get_job("reports", parent.id)
    assert done.state is JobState.COMPLETED and done.result == "saw 2"
    kinds = [e["event"] for e in events_of(coord, "reports", parent.id)]
    assert kinds[:3] == ["waiting_children", "child_completed", "child_completed"] and "waiting" in kinds
    assert coord._redis.hlen(coord.keys.for_queue("extract").flowbox) == 0  # every hand-off applied


def test_grandchildren_run_bottom_up(queues: JobQueueCoordinator) -> None:
    coord = queues
    node = coord.add_flow(FlowJob(queue="reports", data={"level": 0}, children=[
        FlowJob(queue="load", data={"part": 10}, children=[
            FlowJob(queue="extract", data={"part": 1}), FlowJob(queue="extract", data={"part": 2}),
        ]),
    ]))
    middle = node.children[0]
    assert middle.job.state is JobState.WAITING_CHILDREN
    seen: dict = {}
    order = run_all(coord, {"extract": part, "load": collect(seen), "reports": collect(seen)})
    assert order.index(f"load:{middle.job.id}") > max(order.index(f"extract:{c.job.id}") for c in middle.children)
    assert order[-1] == f"reports:{node.job.id}"
    assert len(seen[middle.job.id]["values"]) == 2
    assert seen[node.job.id]["values"] == {f"load:{middle.job.id}": "saw 2"}
    flow = coord.get_flow("reports", node.job.id)
    assert [n.job.state for n in flow.walk()] == [JobState.COMPLETED] * 4


def test_a_child_completion_delivered_twice_changes_nothing(queues: JobQueueCoordinator) -> None:
    coord = queues
    node = coord.add_flow(FlowJob(queue="reports", children=[
        FlowJob(queue="extract", data={"part": 1}), FlowJob(queue="extract", data={"part": 2})]))
    first, second = node.children
    (job_id, token), _ = take_messages(coord, "extract")
    execute(coord, part, "extract", job_id, token, "w1")
    parent_key = coord.keys.for_queue("reports").job(node.job.id)
    before = (coord._redis.hgetall(parent_key), coord._redis.smembers(coord.keys.for_queue("reports").pending(node.job.id)),
              coord._redis.hgetall(coord.keys.for_queue("reports").child_values(node.job.id)),
              coord._redis.xlen(coord.keys.for_queue("reports").events))
    # the same completion again, as a redelivered message would bring it: fenced by token
    assert coord._registry.finish("extract", job_id, token, "completed", payload='{"part": 99}') is False
    execute(coord, part, "extract", job_id, token, "w2")
    # and the hand-off applied a second time, as a sweep replaying it after a crash would
    child_ref = f"extract:{job_id}"
    state, handed, left = coord._flows.flows.settle("reports", node.job.id, [(child_ref, "completed", '{"part": 99}', "fail")])
    assert (state, handed, left) == ("waiting_children", False, False)
    after = (coord._redis.hgetall(parent_key), coord._redis.smembers(coord.keys.for_queue("reports").pending(node.job.id)),
             coord._redis.hgetall(coord.keys.for_queue("reports").child_values(node.job.id)),
             coord._redis.xlen(coord.keys.for_queue("reports").events))
    assert after == before
    assert after[1] == {f"extract:{(second if job_id == first.job.id else first).job.id}"}


@pytest.mark.parametrize("policy", ["fail", "ignore", "remove", "continue"])
def test_failure_policies(queues: JobQueueCoordinator, policy: str) -> None:
    coord = queues
    node = coord.add_flow(FlowJob(queue="reports", children=[
        FlowJob(queue="extract", data={"part": 1}),
        FlowJob(queue="extract", data={"part": 2, "fail": True}, on_failure=policy),
    ]))
    ok, bad = node.children
    bad_ref, ok_ref = f"extract:{bad.job.id}", f"extract:{ok.job.id}"
    seen: dict = {}
    # the failing child runs first, so "continue" starts the parent while the other still waits
    messages = take_messages(coord, "extract")
    for job_id, token in sorted(messages, key=lambda m: m[0] != bad.job.id):
        if job_id == bad.job.id:
            execute(coord, part, "extract", job_id, token, "w")
    parent_after_failure = coord.get_job("reports", node.job.id).state
    for job_id, token in messages:
        if job_id != bad.job.id:
            if policy == "continue":
                run_queue(coord, "reports", collect(seen))  # the parent ran before this child
            execute(coord, part, "extract", job_id, token, "w")
    run_queue(coord, "reports", collect(seen))
    parent = coord.get_job("reports", node.job.id)
    if policy == "fail":
        assert parent_after_failure is JobState.FAILED and parent.state is JobState.FAILED
        assert parent.failed_reason == f"dependency {bad_ref} failed: UnrecoverableError: part 2 broke"
        assert seen == {}
    elif policy == "ignore":
        assert parent_after_failure is JobState.WAITING_CHILDREN and parent.state is JobState.COMPLETED
        assert seen[parent.id] == {"values": {ok_ref: {"part": 1}},
                                   "failures": {bad_ref: "UnrecoverableError: part 2 broke"}}
    elif policy == "remove":
        assert parent_after_failure is JobState.WAITING_CHILDREN and parent.state is JobState.COMPLETED
        assert seen[parent.id] == {"values": {ok_ref: {"part": 1}}, "failures": {}}
    else:
        assert parent_after_failure is JobState.WAITING and parent.state is JobState.COMPLETED
        assert seen[parent.id] == {"values": {}, "failures": {bad_ref: "UnrecoverableError: part 2 broke"}}
        assert coord._flows.children_values("reports", parent.id) == {ok_ref: {"part": 1}}  # arrived later


def test_fail_policy_cascades_to_the_grandparent(queues: JobQueueCoordinator) -> None:
    coord = queues
    node = coord.add_flow(FlowJob(queue="reports", children=[
        FlowJob(queue="load", children=[FlowJob(queue="extract", data={"part": 1, "fail": True})])]))
    run_all(coord, {"extract": part, "load": part, "reports": part})
    middle = node.children[0].job
    assert coord.get_job("load", middle.id).state is JobState.FAILED
    top = coord.get_job("reports", node.job.id)
    assert top.state is JobState.FAILED and top.failed_reason.startswith(f"dependency load:{middle.id} failed")


def test_flow_input_errors_write_nothing(queues: JobQueueCoordinator) -> None:
    coord = queues
    with pytest.raises(Exception, match="nope"):
        coord.add_flow(FlowJob(queue="reports", children=[FlowJob(queue="nope")]))
    with pytest.raises(ValueError, match="on_failure"):
        FlowJob(queue="reports", on_failure="sometimes")
    existing = coord.enqueue_job("extract", {}, job_id="taken")
    with pytest.raises(FlowError, match="exists already"):
        coord.add_flow(FlowJob(queue="reports", children=[FlowJob(queue="extract", options={"job_id": "taken"})]))
    assert coord.get_queue_status("reports").counts.model_dump() == {k: 0 for k in coord.get_queue_status("reports").counts.model_dump()}
    assert [j.id for j in coord.get_jobs("extract", JobState.WAITING)] == [existing.id]


def test_wide_fan_of_ten_thousand_children(queues: JobQueueCoordinator) -> None:
    coord = queues
    node = coord.add_flow(FlowJob(queue="reports", children=[FlowJob(queue="extract", data={"part": i})
                                                             for i in range(10_000)]))
    qk = coord.keys.for_queue("reports")
    assert coord._redis.scard(qk.pending(node.job.id)) == 10_000
    assert coord.get_queue_status("extract").counts.waiting == 10_000
    # complete them all through the registry's own scripts, as workers would, then the parent starts
    for job_id, token in take_messages(coord, "extract"):
        started = coord._registry.start("extract", job_id, token, "w", "h", 30_000, None)
        assert coord._registry.finish("extract", job_id, token, "completed", payload=json.dumps(started.job.data["part"]))
    assert coord.get_job("reports", node.job.id).state is JobState.WAITING
    values = coord._flows.children_values("reports", node.job.id)
    assert len(values) == 10_000 and sorted(values.values()) == list(range(10_000))


def test_a_hand_off_left_by_a_dead_worker_is_applied_by_the_sweep(queues: JobQueueCoordinator) -> None:
    import time

    from coordinator.flows.handoff import SWEEP_AGE_MS
    from coordinator.runtime.maintenance import Maintenance, WorkerParts

    coord = queues
    node = coord.add_flow(FlowJob(queue="reports", children=[FlowJob(queue="extract", data={"part": 1})]))
    (job_id, token), = take_messages(coord, "extract")
    coord._registry.on_handoff = None  # the worker dies right after finish.lua: nothing applied
    execute(coord, part, "extract", job_id, token, "w")
    box = coord.keys.for_queue("extract").flowbox
    assert coord._redis.hlen(box) == 1
    assert coord.get_job("extract", job_id).state is JobState.COMPLETED
    assert coord.get_job("reports", node.job.id).state is JobState.WAITING_CHILDREN
    time.sleep(SWEEP_AGE_MS / 1000 + 0.1)
    parts = WorkerParts(coord._registry, coord.settings, coord._queues.cached_config, coord._heartbeats,
                        coord.processors, coord._flows.handoff)
    Maintenance(parts, ["extract", "reports"], "sweeper").sweep_once(stalled=True, trim=False)
    assert coord._redis.hlen(box) == 0
    assert coord.get_job("reports", node.job.id).state is JobState.WAITING
    assert coord._flows.children_values("reports", node.job.id) == {f"extract:{job_id}": {"part": 1}}


def test_a_small_flow_is_one_transaction(queues: JobQueueCoordinator) -> None:
    """Every script of a small flow goes in one MULTI: a client watching sees none or all of it."""
    coord = queues
    executed: list[tuple[bool, list[str]]] = []
    original = coord._redis.pipeline

    def recording(transaction: bool = True, shard_hint=None):
        pipe = original(transaction=transaction, shard_hint=shard_hint)
        run = pipe.execute

        def execute(raise_on_error: bool = True):
            executed.append((transaction, [args[0] for args, _ in pipe.command_stack]))
            return run(raise_on_error)

        pipe.execute = execute
        return pipe

    coord._redis.pipeline = recording
    try:
        node = coord.add_flow(FlowJob(queue="reports", children=[
            FlowJob(queue="load", children=[FlowJob(queue="extract", data={"part": 1})]),
            FlowJob(queue="extract", data={"part": 2})]))
    finally:
        coord._redis.pipeline = original
    multis = [commands for transaction, commands in executed if transaction]
    # 2 enqueues, 2 waiters, 3 edges: one transaction
    assert len(multis) == 1 and multis[0].count("EVALSHA") == 7
    assert len(coord.get_flow("reports", node.job.id).walk()) == 4
