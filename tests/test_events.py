"""Job events: handlers on the listener thread, the `events()` iterator, resuming after a drop."""

from __future__ import annotations

import time

import pytest
import redis

from coordinator import Event, InvalidArgumentError, JobQueueCoordinator
from tests import processors
from tests.support.waiting import wait_until


def kill_client(admin: redis.Redis, client_id: int) -> None:
    admin.execute_command("CLIENT", "KILL", "ID", client_id)


def listener_client_ids(admin: redis.Redis, name: str) -> list[int]:
    return [int(c["id"]) for c in admin.client_list() if c.get("name") == name]


def of_job(events: list[Event], job_id: str) -> list[str]:
    return [e.event for e in events if e.job_id == job_id]


def test_handler_gets_a_jobs_events_in_order_with_its_trace_id(coord: JobQueueCoordinator) -> None:
    coord.create_queue("ev")
    got: list[Event] = []
    coord.on("*", got.append, queue="ev")
    coord.register_worker("ev", processors.echo, pool="solo", concurrency=1)
    job = coord.enqueue_job("ev", {"n": 1}, trace_id="trace-ev-1")
    coord.wait_for_job("ev", job.id, timeout=30)
    wait_until(lambda: "completed" in of_job(got, job.id), what="completed event")
    assert of_job(got, job.id) == ["waiting", "active", "progress", "completed"]
    mine = [e for e in got if e.job_id == job.id]
    assert all(e.trace_id == "trace-ev-1" and e.queue == "ev" for e in mine)
    assert [e.id for e in mine] == sorted((e.id for e in mine), key=lambda i: tuple(map(int, i.split("-"))))
    assert mine[1].data["attempt"] == 1 and mine[1].data["worker"]
    assert mine[2].data["progress"] == 50
    assert isinstance(mine[3].data["duration_ms"], int)


def test_retrying_delayed_failed_and_cancelled_events(coord: JobQueueCoordinator) -> None:
    coord.create_queue("ev2")
    got: list[Event] = []
    coord.on("*", got.append)  # every queue
    coord.register_worker("ev2", processors.flaky, pool="solo", concurrency=1)
    flaky = coord.enqueue_job("ev2", {"failures": 1}, backoff={"type": "fixed", "delay": 50})
    doomed = coord.enqueue_job("ev2", {"failures": 5}, max_retries=0)
    later = coord.enqueue_job("ev2", {"failures": 0}, delay=60_000)
    assert coord.cancel_job("ev2", later.id)
    for job in (flaky, doomed):
        coord.wait_for_job("ev2", job.id, timeout=30)
    wait_until(lambda: of_job(got, flaky.id)[-1:] == ["completed"] and of_job(got, doomed.id)[-1:] == ["failed"],
               what="final events")
    assert of_job(got, flaky.id) == ["waiting", "active", "retrying", "delayed", "waiting", "active", "completed"]
    assert of_job(got, doomed.id) == ["waiting", "active", "failed"]
    assert of_job(got, later.id) == ["delayed", "cancelled"]
    failed = next(e for e in got if e.job_id == doomed.id and e.event == "failed")
    assert "flaky failure" in failed.data["reason"]
    # every job got a trace id at enqueue, and every event of it carries that id
    for job in (flaky, doomed, later):
        assert job.trace_id and len(job.trace_id) == 32
        assert {e.trace_id for e in got if e.job_id == job.id} == {job.trace_id}


def test_stalled_event_from_the_recovery_script(coord: JobQueueCoordinator) -> None:
    coord.create_queue("ev3")
    got: list[Event] = []
    coord.on("stalled", got.append, queue="ev3")
    job = coord.enqueue_job("ev3", {})
    # claim the job as a worker would, then let its 200 ms lock lapse without renewal
    claim = coord._registry.start("ev3", job.id, 1, "gone-worker", "host", 200, None)
    assert claim.status == "active"
    time.sleep(0.3)
    assert coord._registry.recover_stalled("ev3", max_stalled_count=1) == 1
    wait_until(lambda: len(got) == 1, what="stalled event")
    assert got[0].job_id == job.id and got[0].data["count"] == 1
    assert [e.event for e in coord.events("ev3")] == ["waiting", "active", "stalled", "waiting"]


def test_listener_resumes_after_dropped_connections_without_a_gap(
        coord: JobQueueCoordinator, redis_client: redis.Redis) -> None:
    coord.create_queue("drop")
    got: list[str] = []
    coord.on("waiting", lambda e: got.append(e.id), queue="drop")
    name = coord._listener().client_name
    kills = 0
    for round_no in range(6):
        wait_until(lambda: listener_client_ids(redis_client, name), what="listener connection")
        coord.enqueue_bulk("drop", [{"data": {"round": round_no, "k": k}} for k in range(20)])
        for client_id in listener_client_ids(redis_client, name):
            kill_client(redis_client, client_id)
            kills += 1
        # written while the listener is cut off: it must read these after reconnecting
        coord.enqueue_bulk("drop", [{"data": {"round": round_no, "k": k}} for k in range(20, 50)])
    stored = [entry_id for entry_id, _ in redis_client.xrange(coord.keys.for_queue("drop").events)]
    assert len(stored) == 300
    wait_until(lambda: len(got) >= 300, what="all 300 events")
    assert kills >= 6
    assert got == stored


def test_events_iterator_resumes_from_an_id(coord: JobQueueCoordinator) -> None:
    coord.create_queue("iter")
    first = coord.enqueue_bulk("iter", [{"data": i} for i in range(5)])
    seen = []
    for event in coord.events("iter"):
        seen.append(event)
        if len(seen) == 3:
            break
    more = coord.enqueue_bulk("iter", [{"data": i} for i in range(2)])
    rest = list(coord.events("iter", since=seen[-1].id))
    assert [e.job_id for e in seen + rest] == [j.id for j in first + more]
    assert list(coord.events("iter", since="$")) == []


def test_following_iterator_survives_a_killed_connection(
        coord: JobQueueCoordinator, redis_client: redis.Redis) -> None:
    coord.create_queue("follow")
    coord.enqueue_job("follow", 1)
    stream = coord.events("follow", follow=True, idle_timeout_s=5)
    assert next(stream).event == "waiting"
    kill_client(redis_client, coord._redis.client_id())
    jobs = coord.enqueue_bulk("follow", [{"data": i} for i in range(3)])
    kill_client(redis_client, coord._redis.client_id())
    assert [next(stream).job_id for _ in range(3)] == [j.id for j in jobs]


def test_off_and_failing_handlers(coord: JobQueueCoordinator) -> None:
    coord.create_queue("off")
    kept: list[Event] = []
    dropped: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("handler bug")

    coord.on("waiting", broken, queue="off")
    coord.on("waiting", kept.append, queue="off")
    coord.on("waiting", dropped.append, queue="off")
    first = coord.enqueue_job("off", 1)
    wait_until(lambda: len(kept) == 1 and len(dropped) == 1, what="first delivery")
    coord.off("waiting", dropped.append)
    second = coord.enqueue_job("off", 2)
    wait_until(lambda: len(kept) == 2, what="second delivery")
    assert [e.job_id for e in kept] == [first.id, second.id]
    assert len(dropped) == 1
    with pytest.raises(InvalidArgumentError, match="event 'finished'"):
        coord.on("finished", kept.append)


def test_queue_events_for_pause_and_resume(coord: JobQueueCoordinator) -> None:
    coord.create_queue("pq")
    coord.pause_queue("pq")
    coord.resume_queue("pq")
    assert [(e.event, e.job_id) for e in coord.events("pq")] == [("paused", None), ("resumed", None)]
