"""Jobs through real `celery worker` subprocesses: results, retries, pause, cancel, priorities."""

from __future__ import annotations

import time

import pytest

from coordinator import Backoff, JobQueueCoordinator, JobState
from tests import processors
from tests.conftest import REDIS_URL

WAIT_S = 30


def wait_until(predicate, timeout: float = WAIT_S, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def record_data(prefix: str, **extra) -> dict:
    return {"url": REDIS_URL, "key": f"{prefix}:test:runs", **extra}


def test_job_enqueued_before_the_worker_exists_runs(coord: JobQueueCoordinator) -> None:
    coord.create_queue("photos")
    job = coord.enqueue_job("photos", {"photo": 7}, name="thumb", trace_id="t-7")
    worker = coord.register_worker("photos", processors.echo, pool="solo")
    assert [w.id for w in coord.get_workers_by_queue("photos")] == [worker.id]

    done = coord.wait_for_job("photos", job.id, timeout=WAIT_S)
    assert done.state is JobState.COMPLETED
    assert done.result["echo"] == {"photo": 7} and done.result["name"] == "thumb"
    assert done.progress == 50 and done.logs == ["echo thumb"]
    assert done.attempts_made == 1 and done.worker_id == worker.node_name
    assert done.processed_on <= done.finished_on and done.trace_id == "t-7"

    coord.close_worker(worker.id, timeout=10)
    assert coord.get_workers_by_queue("photos") == []


def test_retries_with_backoff_then_success(coord: JobQueueCoordinator) -> None:
    coord.create_queue("flaky")
    job = coord.enqueue_job("flaky", {"failures": 2}, max_retries=3, backoff=Backoff(type="fixed", delay=50))
    coord.register_worker("flaky", processors.flaky, pool="solo")
    done = coord.wait_for_job("flaky", job.id, timeout=WAIT_S)
    assert done.state is JobState.COMPLETED and done.result == "recovered"
    assert done.attempts_made == 3
    assert len(done.stacktrace) == 2 and "flaky failure on attempt 2" in done.stacktrace[-1]


def test_exhausted_retries_fail_into_the_dead_letter_list_and_retry_job_reruns(coord) -> None:
    coord.create_queue("bad")
    job = coord.enqueue_job("bad", {}, max_retries=1, backoff=Backoff(type="exponential", delay=20))
    coord.register_worker("bad", processors.always_fails, pool="solo")
    failed = coord.wait_for_job("bad", job.id, timeout=WAIT_S)
    assert failed.state is JobState.FAILED and failed.attempts_made == 2
    assert failed.failed_reason == "RuntimeError: boom" and "Traceback" in failed.stacktrace[-1]
    assert [j.id for j in coord.get_failed_jobs("bad")] == [job.id]

    assert coord.retry_job("bad", job.id)
    wait_until(lambda: (j := coord.get_job("bad", job.id)).state is JobState.FAILED and j.attempts_made == 2
               and j.finished_on > failed.finished_on)


@pytest.mark.parametrize("kind", ["unrecoverable", "fatal-prefix"])
def test_unrecoverable_errors_fail_at_once(coord, kind: str) -> None:
    coord.create_queue("fatal")
    job = coord.enqueue_job("fatal", {"kind": kind}, max_retries=5)
    coord.register_worker("fatal", processors.fatal, pool="solo")
    done = coord.wait_for_job("fatal", job.id, timeout=WAIT_S)
    assert done.state is JobState.FAILED and done.attempts_made == 1


def test_a_result_that_is_not_json_fails_the_job(coord) -> None:
    coord.create_queue("q")
    job = coord.enqueue_job("q", {}, max_retries=0)
    coord.register_worker("q", processors.bad_result, pool="solo")
    done = coord.wait_for_job("q", job.id, timeout=WAIT_S)
    assert done.state is JobState.FAILED and "result" in done.failed_reason


def test_paused_queue_starts_nothing_on_a_running_or_later_worker(coord, prefix, redis_client) -> None:
    coord.create_queue("photos")
    coord.register_worker("photos", processors.record, pool="solo")
    coord.pause_queue("photos")
    jobs = [coord.enqueue_job("photos", record_data(prefix)) for _ in range(3)]
    late = coord.register_worker("photos", processors.record, pool="solo")  # started while paused
    time.sleep(1.5)  # give both workers every chance to (wrongly) run something
    assert redis_client.llen(f"{prefix}:test:runs") == 0
    counts = coord.get_queue_status("photos").counts
    assert (counts.waiting, counts.active, counts.completed) == (3, 0, 0)

    coord.resume_queue("photos")
    for job in jobs:
        assert coord.wait_for_job("photos", job.id, timeout=WAIT_S).state is JobState.COMPLETED
    assert sorted(redis_client.lrange(f"{prefix}:test:runs", 0, -1)) == sorted(j.id for j in jobs)
    coord.close_worker(late.id)


def test_cancelled_job_never_runs_on_a_worker_started_later(coord, prefix, redis_client) -> None:
    coord.create_queue("q")
    cancelled = coord.enqueue_job("q", record_data(prefix))
    assert coord.cancel_job("q", cancelled.id)
    coord.register_worker("q", processors.record, pool="solo")
    after = coord.enqueue_job("q", record_data(prefix))
    assert coord.wait_for_job("q", after.id, timeout=WAIT_S).state is JobState.COMPLETED
    assert redis_client.lrange(f"{prefix}:test:runs", 0, -1) == [after.id]
    job = coord.get_job("q", cancelled.id)
    assert job.state is JobState.CANCELLED and job.attempts_made == 0 and job.processed_on is None


def test_high_priority_overtakes_and_a_reprioritised_job_runs_once(coord, prefix, redis_client) -> None:
    coord.create_queue("q")
    low = [coord.enqueue_job("q", record_data(prefix), priority=8) for _ in range(4)]
    bumped = coord.enqueue_job("q", record_data(prefix), priority=9)
    urgent = coord.enqueue_job("q", record_data(prefix), priority=1)
    assert coord.update_job_priority("q", bumped.id, 2)
    coord.register_worker("q", processors.record, pool="solo", concurrency=1)
    for job in [*low, bumped, urgent]:
        coord.wait_for_job("q", job.id, timeout=WAIT_S)
    runs = [r for r in redis_client.lrange(f"{prefix}:test:runs", 0, -1)]
    assert runs[:2] == [urgent.id, bumped.id]
    assert sorted(runs[2:]) == sorted(j.id for j in low)  # the bumped job's old message did not run
    assert len(runs) == 6


def test_promoted_delayed_job_runs_now(coord) -> None:
    coord.create_queue("q")
    coord.register_worker("q", processors.echo, pool="solo")
    job = coord.schedule_job("q", "later", {"x": 1}, delay=3_600_000)
    time.sleep(0.3)
    assert coord.get_job("q", job.id).state is JobState.DELAYED
    assert coord.promote_job("q", job.id)
    assert coord.wait_for_job("q", job.id, timeout=WAIT_S).state is JobState.COMPLETED


def test_cancel_active_needs_terminate_and_stops_the_job(coord, prefix, redis_client) -> None:
    coord.create_queue("slow")
    coord.register_worker("slow", processors.record, pool="prefork", concurrency=1)
    job = coord.enqueue_job("slow", record_data(prefix, seconds=60))
    wait_until(lambda: coord.get_job("slow", job.id).state is JobState.ACTIVE)
    assert not coord.cancel_job("slow", job.id)
    assert coord.cancel_job("slow", job.id, terminate=True)
    assert coord.get_job("slow", job.id).state is JobState.CANCELLED
    nxt = coord.enqueue_job("slow", record_data(prefix))
    assert coord.wait_for_job("slow", nxt.id, timeout=WAIT_S).state is JobState.COMPLETED  # the slot was freed
    assert coord.get_job("slow", job.id).state is JobState.CANCELLED
