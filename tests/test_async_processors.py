"""``async def`` processors in real managed workers: many coroutines in one process, with the
same semantics as sync jobs (progress, logs, retries, timeouts, cancellation, stalled recovery)."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest
import redis

from coordinator import Backoff, FlowJob, JobQueueCoordinator, JobState
from tests import async_processors, flow_processors, processors
from tests.support.celery_events import CeleryEventLog
from tests.support.env import AMQP_URL, FAST_SWEEPS, REDIS_URL, delete_amqp_queues, require_rabbitmq
from tests.support.jobs import max_overlap, record_data
from tests.support.waiting import WAIT_S, wait_until


def test_a_thousand_io_bound_jobs_run_as_coroutines_of_one_process(coord: JobQueueCoordinator) -> None:
    coord.create_queue("io")
    worker = coord.register_worker("io", async_processors.io_sleep, concurrency=100)
    jobs = coord.enqueue_bulk("io", [{"data": {"n": i}} for i in range(1000)])
    wait_until(lambda: coord.get_queue_status("io").counts.completed == 1000, timeout=180, interval=0.5)
    counts = coord.get_queue_status("io").counts
    assert (counts.waiting, counts.active, counts.failed) == (0, 0, 0)
    done = coord.get_jobs("io", "completed")
    assert sorted(j.result["n"] for j in done) == list(range(1000))
    assert {j.result["pid"] for j in done} == {worker.pid}
    assert {j.id for j in done} == {j.id for j in jobs}
    peak = max_overlap(done)
    assert 10 < peak <= 100, peak  # many at once, never more than the concurrency
    # the finished-job counts reach the worker's status from the lock keeper's thread, not the loop
    wait_until(lambda: coord.get_worker(worker.id).processed == 1000)
    assert coord.get_worker(worker.id).failed == 0


def test_sync_and_async_queues_in_one_deployment(any_coord: JobQueueCoordinator) -> None:
    """With Redis as the broker the worker's loop takes the messages itself; with RabbitMQ, Celery's
    consumer receives them and its task hands the jobs to the loop."""
    coord = any_coord
    coord.create_queue("reports")
    coord.create_queue("thumbs")
    coord.register_worker("reports", async_processors.reporting, concurrency=10)
    coord.register_worker("thumbs", processors.echo, pool="solo")
    a = coord.enqueue_job("reports", {"r": 1}, name="weekly")
    s = coord.enqueue_job("thumbs", {"t": 1})
    done = coord.wait_for_job("reports", a.id, timeout=WAIT_S)
    assert done.state is JobState.COMPLETED, done.failed_reason
    assert done.result == {"echo": {"r": 1}, "name": "weekly"}
    assert done.progress == 50 and done.logs == ["reporting weekly"]
    events = [e.event for e in coord.events("reports") if e.job_id == a.id]
    assert events == ["waiting", "active", "progress", "completed"]
    assert coord.wait_for_job("thumbs", s.id, timeout=WAIT_S).result["echo"] == {"t": 1}


def test_async_job_retries_with_backoff_then_fails_for_good(coord: JobQueueCoordinator) -> None:
    coord.create_queue("flaky")
    coord.register_worker("flaky", async_processors.flaky, concurrency=5)
    ok = coord.enqueue_job("flaky", {"failures": 1}, max_retries=2, backoff=Backoff(type="fixed", delay=100))
    bad = coord.enqueue_job("flaky", {"failures": 5}, max_retries=1, backoff=Backoff(type="fixed", delay=100))
    done = coord.wait_for_job("flaky", ok.id, timeout=WAIT_S)
    assert (done.state, done.result, done.attempts_made) == (JobState.COMPLETED, "recovered", 2)
    failed = coord.wait_for_job("flaky", bad.id, timeout=WAIT_S)
    assert failed.state is JobState.FAILED and failed.attempts_made == 2
    assert failed.failed_reason == "RuntimeError: flaky failure on attempt 2"
    assert "retrying" in [e.event for e in coord.events("flaky") if e.job_id == bad.id]


def test_a_running_async_job_is_cancelled_and_a_timed_out_one_fails(coord: JobQueueCoordinator, prefix: str,
                                                                    redis_client: redis.Redis) -> None:
    coord.create_queue("slow")
    coord.register_worker("slow", async_processors.recorded, concurrency=2)
    long = coord.enqueue_job("slow", record_data(prefix, seconds=60))
    timed = coord.enqueue_job("slow", record_data(prefix, seconds=30), timeout=1, max_retries=0)
    wait_until(lambda: coord.get_job("slow", long.id).state is JobState.ACTIVE)
    assert coord.cancel_job("slow", long.id)  # an active job too (no terminate): the keeper's Attempt
    assert not coord.cancel_job("slow", long.id)  # already cancelled
    cancelled_key = f"{prefix}:test:runs:cancelled"
    # the coroutine itself was cancelled (it recorded the CancelledError), not just fenced off
    wait_until(lambda: redis_client.lrange(cancelled_key, 0, -1) == [long.id])
    assert coord.get_job("slow", long.id).state is JobState.CANCELLED

    failed = coord.wait_for_job("slow", timed.id, timeout=WAIT_S)
    assert failed.state is JobState.FAILED
    assert failed.failed_reason == "JobTimeoutError: timeout: the job ran past its limit of 1.0 s"
    assert redis_client.lrange(cancelled_key, 0, -1)[-1] == timed.id  # asyncio.timeout cancelled it
    nxt = coord.enqueue_job("slow", record_data(prefix))
    assert coord.wait_for_job("slow", nxt.id, timeout=WAIT_S).state is JobState.COMPLETED  # slots freed


def test_jobs_of_a_sigkilled_async_worker_are_recovered(coord: JobQueueCoordinator, prefix: str,
                                                        redis_client: redis.Redis) -> None:
    coord.create_queue("q")
    worker = coord.register_worker("q", async_processors.recorded, concurrency=10)
    jobs = [coord.enqueue_job("q", record_data(prefix, seconds=2)) for _ in range(4)]
    wait_until(lambda: all(coord.get_job("q", j.id).state is JobState.ACTIVE for j in jobs))
    wait_until(lambda: len(redis_client.lrange(f"{prefix}:test:runs", 0, -1)) == 4)
    os.killpg(worker.pid, signal.SIGKILL)
    wait_until(lambda: not psutil.pid_exists(worker.pid) or psutil.Process(worker.pid).status() == "zombie")
    # the supervisor restarts the worker; the stalled sweep sends the jobs back to waiting
    for job in jobs:
        done = coord.wait_for_job("q", job.id, timeout=60)
        assert done.state is JobState.COMPLETED and done.stalled_count == 1
    runs = redis_client.lrange(f"{prefix}:test:runs", 0, -1)
    assert sorted(runs) == sorted([j.id for j in jobs] * 2)  # each ran twice, completed once
    stalled = {e.job_id for e in coord.events("q") if e.event == "stalled"}
    assert stalled == {j.id for j in jobs}
    assert coord.get_worker(worker.id).pid != worker.pid


def test_closing_an_async_worker_lets_its_running_jobs_finish(coord: JobQueueCoordinator, prefix: str) -> None:
    coord.create_queue("q")
    worker = coord.register_worker("q", async_processors.recorded, concurrency=4)
    # one bulk write and 5 s each: all three are running together even on a loaded machine
    jobs = coord.enqueue_bulk("q", [{"data": record_data(prefix, seconds=5)} for _ in range(3)])
    wait_until(lambda: all(coord.get_job("q", j.id).state is JobState.ACTIVE for j in jobs))
    wait_until(lambda: coord.get_worker(worker.id).active_jobs == 3)  # the heartbeat counts coroutines
    assert coord.get_worker(worker.id).concurrency == 4
    coord.close_worker(worker.id, timeout=30)
    assert not psutil.pid_exists(worker.pid) or psutil.Process(worker.pid).status() == "zombie"
    for job in jobs:
        done = coord.get_job("q", job.id)
        assert done.state is JobState.COMPLETED and done.stalled_count == 0


def test_a_paused_async_worker_takes_no_job_until_resumed(coord: JobQueueCoordinator) -> None:
    coord.create_queue("io")
    worker = coord.register_worker("io", async_processors.io_sleep, concurrency=5)
    coord.pause_worker(worker.id)
    assert coord.get_worker(worker.id).state.value == "paused"
    job = coord.enqueue_job("io", {"n": 1})
    time.sleep(1.0)  # the loop's consumer looks every 100 ms at most while idle
    assert coord.get_job("io", job.id).state is JobState.WAITING
    coord.resume_worker(worker.id)
    assert coord.wait_for_job("io", job.id, timeout=WAIT_S).state is JobState.COMPLETED


def test_async_children_hand_their_results_to_the_parent_at_once(prefix: str, redis_client: redis.Redis) -> None:
    """The hand-off an async finish writes is applied by the worker (off its loop) right away: with
    the flow sweep pushed out to 10 minutes, nothing else could settle the parent."""
    coord = JobQueueCoordinator(REDIS_URL, prefix=prefix, **{**FAST_SWEEPS, "stalled_interval_ms": 600_000})
    try:
        coord.create_queue("aparts")
        coord.create_queue("sum")
        coord.register_worker("aparts", async_processors.part, concurrency=10)
        coord.register_worker("sum", flow_processors.total, pool="solo")
        runs_key = f"{prefix}:test:runs"
        node = coord.add_flow(FlowJob(queue="sum", data={"url": REDIS_URL, "key": runs_key}, children=[
            FlowJob(queue="aparts", data={"i": i}) for i in range(6)]))
        parent = coord.wait_for_job("sum", node.job.id, timeout=WAIT_S)
        assert parent.state is JobState.COMPLETED, parent.failed_reason
        assert parent.result == {"count": 6, "sum": 15}
        assert redis_client.lrange(runs_key, 0, -1) == [node.job.id]
    finally:
        coord.shutdown(timeout=10)


@pytest.mark.parametrize("broker", ["redis", "amqp"])
def test_celery_events_carry_an_async_jobs_real_outcome(broker: str, prefix: str) -> None:
    """Flower reads Celery's task events: an async job that failed is task-failed, never
    task-succeeded, whether the loop took its message (Redis) or Celery's consumer handed it
    over (RabbitMQ)."""
    broker_url = None
    if broker == "amqp":
        require_rabbitmq()
        broker_url = AMQP_URL
    coord = JobQueueCoordinator(REDIS_URL, broker_url=broker_url, prefix=prefix, task_events=True, **FAST_SWEEPS)
    try:
        coord.create_queue("ok")
        coord.create_queue("bad")
        coord.register_worker("ok", async_processors.echo, concurrency=5)
        coord.register_worker("bad", async_processors.fatal, concurrency=5)
        with CeleryEventLog(coord.app) as log:
            good = coord.enqueue_job("ok", {"x": 1}, name="resize")
            bad = coord.enqueue_job("bad", {"y": 2})
            assert coord.wait_for_job("ok", good.id, WAIT_S).state is JobState.COMPLETED
            assert coord.wait_for_job("bad", bad.id, WAIT_S).state is JobState.FAILED
            good_id, bad_id = f"{good.id}.1", f"{bad.id}.1"
            wait_until(lambda: "task-succeeded" in [e["type"] for e in log.of(good_id)])
            wait_until(lambda: "task-failed" in [e["type"] for e in log.of(bad_id)])
            time.sleep(0.5)  # any late event would have arrived
        good_events = {e["type"]: e for e in log.of(good_id)}
        bad_events = {e["type"]: e for e in log.of(bad_id)}
        assert {"task-received", "task-started", "task-succeeded"} <= set(good_events)
        assert good_events["task-received"]["name"] == "resize"
        assert good_events["task-received"]["args"] == '{"x":1}'
        assert "'name': 'resize'" in good_events["task-succeeded"]["result"]
        assert {"task-received", "task-started", "task-failed"} <= set(bad_events)
        assert "task-succeeded" not in bad_events
        assert "cannot process this" in bad_events["task-failed"]["exception"]
        assert "UnrecoverableError" in bad_events["task-failed"]["traceback"]
    finally:
        queues = coord.get_queue_names()
        coord.shutdown(timeout=10)
        if broker_url:
            delete_amqp_queues(coord, queues)
