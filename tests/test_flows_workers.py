"""Flows through real `celery worker` processes: a fan-in of 1,000 children over two workers
while workers are SIGKILLed; the parent runs exactly once and sees every result."""

from __future__ import annotations

import time

from coordinator import FlowJob, JobQueueCoordinator, JobState
from tests import flow_processors
from tests.support.env import REDIS_URL
from tests.support.pools import kill_worker_group, process_running
from tests.support.waiting import wait_until

CHILDREN = 1_000
#: Each child's run: the 400 left at the second kill take at least 3 s on the 4 pool processes, so a
#: test process starved on a loaded machine still kills while children run (at 5 ms all had finished).
CHILD_S = 0.03


def _diagnose(coord: JobQueueCoordinator, prefix: str, parent_id: str) -> str:
    """What a stalled fan-in left in Redis: child states, pending, hand-offs, broker and unacked."""
    r = coord._redis
    parts, total = coord.keys.for_queue("parts"), coord.keys.for_queue("sum")
    states = {s: r.zcard(parts.index(s)) for s in ("waiting", "active", "completed", "failed", "delayed")}
    pending = sorted(r.smembers(total.pending(parent_id)))
    lines = [f"parts states {states}", f"parent pending {len(pending)}: {pending[:10]}",
             f"parent record {r.hgetall(total.job(parent_id))}",
             f"flowbox {r.hlen(parts.flowbox)}: {list(r.hkeys(parts.flowbox))[:10]}",
             f"parts broker lists {[(k, r.llen(k)) for k in parts.broker_lists]}",
             f"sum broker lists {[(k, r.llen(k)) for k in total.broker_lists]}",
             f"unacked {r.hlen(coord.keys.unacked)} index {r.zcard(coord.keys.unacked_index)}",
             f"unacked index {r.zrange(coord.keys.unacked_index, 0, 20, withscores=True)}"]
    for ref in pending[:5]:
        lines.append(f"pending child {ref}: {r.hgetall(parts.job(ref.rpartition(':')[2]))}")
    return "\n".join(lines)


def test_fan_in_of_a_thousand_children_survives_two_sigkills(coord: JobQueueCoordinator, prefix: str) -> None:
    coord.create_queue("parts")
    coord.create_queue("sum")
    runs_key = f"{prefix}:test:parent-runs"
    node = coord.add_flow(FlowJob(queue="sum", data={"url": REDIS_URL, "key": runs_key}, children=[
        FlowJob(queue="parts", data={"i": i, "seconds": CHILD_S}) for i in range(CHILDREN)]))
    workers = [coord.register_worker("parts", flow_processors.part, pool="prefork", concurrency=2)
               for _ in range(2)]
    coord.register_worker("sum", flow_processors.total, pool="solo")

    def completed() -> int:
        return coord.get_queue_status("parts").counts.completed

    for victim, after in ((workers[0], 250), (workers[1], 600)):
        wait_until(lambda: completed() >= after, 120, f"{after} children completed")
        pid = coord.get_worker(victim.id).pid
        kill_worker_group(pid)
        # read right after the SIGKILL (counts only grow): children were still running when it hit
        assert completed() < CHILDREN
        wait_until(lambda: not process_running(pid), 10, "the killed worker gone")

    try:
        done = coord.wait_for_job("sum", node.job.id, timeout=240)
    except Exception:
        print(_diagnose(coord, prefix, node.job.id))
        raise
    assert done.state is JobState.COMPLETED
    assert done.result == {"count": CHILDREN, "sum": sum(range(CHILDREN))}
    assert coord._redis.lrange(runs_key, 0, -1) == [node.job.id]  # the parent ran exactly once
    crashes = [f for _, f in coord._redis.xrange(coord.keys.for_queue("parts").events)
               if f.get("event") == "worker" and f.get("action") == "crashed"]
    assert len(crashes) == 2
    assert coord._redis.hlen(coord.keys.for_queue("parts").flowbox) == 0
    parent_events = [f["event"] for _, f in coord._redis.xrange(coord.keys.for_queue("sum").events)
                     if f.get("job_id") == node.job.id]
    assert parent_events.count("child_completed") == CHILDREN and parent_events.count("active") == 1


def test_batch_callbacks_fire_once_with_members_added_by_running_members(coord: JobQueueCoordinator,
                                                                         prefix: str) -> None:
    coord.create_queue("members")
    coord.create_queue("callbacks")
    key = f"{prefix}:test:callbacks"
    base = {"url": REDIS_URL, "key": key}
    with coord.batch(on_complete=FlowJob(queue="callbacks", data={**base, "kind": "complete"}),
                     on_success=FlowJob(queue="callbacks", data={**base, "kind": "success"})) as batch:
        for _ in range(10):
            batch.enqueue_job("members", {**base, "spawn": 5})
    coord.register_worker("members", flow_processors.spawner, pool="prefork", concurrency=2)
    coord.register_worker("callbacks", flow_processors.callback, pool="solo")
    status = wait_until(lambda: (s := coord.get_batch(batch.id)).done and s, 120, "the batch done")
    assert (status.total, status.succeeded, status.failed, status.pending) == (60, 60, 0, 0)
    wait_until(lambda: coord._redis.llen(key) >= 2, 60, "both callbacks")
    time.sleep(1)  # a duplicate would show up by now
    assert sorted(coord._redis.lrange(key, 0, -1)) == ["complete", "success"]
