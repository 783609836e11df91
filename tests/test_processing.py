"""Jobs through real `celery worker` subprocesses: results, retries, pause, cancel, priorities.

Every test runs twice: with Redis as the broker, and with RabbitMQ (`any_coord`)."""

from __future__ import annotations

import time

import pytest

from coordinator import Backoff, JobQueueCoordinator, JobState
from tests import processors
from tests.support.jobs import record_data
from tests.support.waiting import WAIT_S, wait_until


def test_job_enqueued_before_the_worker_exists_runs(any_coord: JobQueueCoordinator) -> None:
    any_coord.create_queue("photos")
    job = any_coord.enqueue_job("photos", {"photo": 7}, name="thumb", trace_id="t-7")
    worker = any_coord.register_worker("photos", processors.echo, pool="solo")
    assert [w.id for w in any_coord.get_workers_by_queue("photos")] == [worker.id]

    done = any_coord.wait_for_job("photos", job.id, timeout=WAIT_S)
    assert done.state is JobState.COMPLETED
    assert done.result["echo"] == {"photo": 7} and done.result["name"] == "thumb"
    assert done.progress == 50 and done.logs == ["echo thumb"]
    assert done.attempts_made == 1 and done.worker_id == worker.node_name
    assert done.processed_on <= done.finished_on and done.trace_id == "t-7"

    time.sleep(any_coord.settings.config_cache_s)  # the producer's cached queue config expires
    unnamed = any_coord.enqueue_job("photos", {"photo": 8})
    assert unnamed.name == "echo"  # the processor's name, as its worker recorded it

    any_coord.close_worker(worker.id, timeout=10)
    assert any_coord.get_workers_by_queue("photos") == []


def test_retries_with_backoff_then_success(any_coord: JobQueueCoordinator) -> None:
    any_coord.create_queue("flaky")
    job = any_coord.enqueue_job("flaky", {"failures": 2}, max_retries=3, backoff=Backoff(type="fixed", delay=50))
    any_coord.register_worker("flaky", processors.flaky, pool="solo")
    done = any_coord.wait_for_job("flaky", job.id, timeout=WAIT_S)
    assert done.state is JobState.COMPLETED and done.result == "recovered"
    assert done.attempts_made == 3
    assert len(done.stacktrace) == 2 and "flaky failure on attempt 2" in done.stacktrace[-1]


def test_exhausted_retries_fail_into_the_dead_letter_list_and_retry_job_reruns(any_coord) -> None:
    any_coord.create_queue("bad")
    job = any_coord.enqueue_job("bad", {}, max_retries=1, backoff=Backoff(type="exponential", delay=20))
    any_coord.register_worker("bad", processors.always_fails, pool="solo")
    failed = any_coord.wait_for_job("bad", job.id, timeout=WAIT_S)
    assert failed.state is JobState.FAILED and failed.attempts_made == 2
    assert failed.failed_reason == "RuntimeError: boom" and "Traceback" in failed.stacktrace[-1]
    assert [j.id for j in any_coord.get_failed_jobs("bad")] == [job.id]

    assert any_coord.retry_job("bad", job.id)
    wait_until(lambda: (j := any_coord.get_job("bad", job.id)).state is JobState.FAILED and j.attempts_made == 2
               and j.finished_on > failed.finished_on)


@pytest.mark.parametrize("kind", ["unrecoverable", "fatal-prefix"])
def test_unrecoverable_errors_fail_at_once(any_coord, kind: str) -> None:
    any_coord.create_queue("fatal")
    job = any_coord.enqueue_job("fatal", {"kind": kind}, max_retries=5)
    any_coord.register_worker("fatal", processors.fatal, pool="solo")
    done = any_coord.wait_for_job("fatal", job.id, timeout=WAIT_S)
    assert done.state is JobState.FAILED and done.attempts_made == 1


def test_a_result_that_is_not_json_fails_the_job(any_coord) -> None:
    any_coord.create_queue("q")
    job = any_coord.enqueue_job("q", {}, max_retries=0)
    any_coord.register_worker("q", processors.bad_result, pool="solo")
    done = any_coord.wait_for_job("q", job.id, timeout=WAIT_S)
    assert done.state is JobState.FAILED and "result" in done.failed_reason


def test_paused_queue_starts_nothing_on_a_running_or_later_worker(any_coord, prefix, redis_client) -> None:
    any_coord.create_queue("photos")
    any_coord.register_worker("photos", processors.record, pool="solo")
    any_coord.pause_queue("photos")
    jobs = [any_coord.enqueue_job("photos", record_data(prefix)) for _ in range(3)]
    late = any_coord.register_worker("photos", processors.record, pool="solo")  # started while paused
    time.sleep(1.5)  # give both workers every chance to (wrongly) run something
    assert redis_client.llen(f"{prefix}:test:runs") == 0
    counts = any_coord.get_queue_status("photos").counts
    assert (counts.waiting, counts.active, counts.completed) == (3, 0, 0)

    any_coord.resume_queue("photos")
    for job in jobs:
        assert any_coord.wait_for_job("photos", job.id, timeout=WAIT_S).state is JobState.COMPLETED
    assert sorted(redis_client.lrange(f"{prefix}:test:runs", 0, -1)) == sorted(j.id for j in jobs)
    any_coord.close_worker(late.id)


def test_cancelled_job_never_runs_on_a_worker_started_later(any_coord, prefix, redis_client) -> None:
    any_coord.create_queue("q")
    cancelled = any_coord.enqueue_job("q", record_data(prefix))
    assert any_coord.cancel_job("q", cancelled.id)
    any_coord.register_worker("q", processors.record, pool="solo")
    after = any_coord.enqueue_job("q", record_data(prefix))
    assert any_coord.wait_for_job("q", after.id, timeout=WAIT_S).state is JobState.COMPLETED
    assert redis_client.lrange(f"{prefix}:test:runs", 0, -1) == [after.id]
    job = any_coord.get_job("q", cancelled.id)
    assert job.state is JobState.CANCELLED and job.attempts_made == 0 and job.processed_on is None


def test_high_priority_overtakes_and_a_reprioritised_job_runs_once(any_coord, prefix, redis_client) -> None:
    any_coord.create_queue("q")
    low = [any_coord.enqueue_job("q", record_data(prefix), priority=8) for _ in range(4)]
    bumped = any_coord.enqueue_job("q", record_data(prefix), priority=9)
    urgent = any_coord.enqueue_job("q", record_data(prefix), priority=1)
    assert any_coord.update_job_priority("q", bumped.id, 2)
    any_coord.register_worker("q", processors.record, pool="solo", concurrency=1)
    for job in [*low, bumped, urgent]:
        any_coord.wait_for_job("q", job.id, timeout=WAIT_S)
    runs = [r for r in redis_client.lrange(f"{prefix}:test:runs", 0, -1)]
    assert runs[:2] == [urgent.id, bumped.id]
    assert sorted(runs[2:]) == sorted(j.id for j in low)  # the bumped job's old message did not run
    assert len(runs) == 6


def test_promoted_delayed_job_runs_now(any_coord) -> None:
    any_coord.create_queue("q")
    any_coord.register_worker("q", processors.echo, pool="solo")
    job = any_coord.schedule_job("q", "later", {"x": 1}, delay=3_600_000)
    time.sleep(0.3)
    assert any_coord.get_job("q", job.id).state is JobState.DELAYED
    assert any_coord.promote_job("q", job.id)
    assert any_coord.wait_for_job("q", job.id, timeout=WAIT_S).state is JobState.COMPLETED


def test_cancel_active_with_terminate_stops_the_job_at_once(any_coord, prefix, redis_client) -> None:
    any_coord.create_queue("slow")
    any_coord.register_worker("slow", processors.record, pool="prefork", concurrency=1)
    job = any_coord.enqueue_job("slow", record_data(prefix, seconds=60))
    wait_until(lambda: any_coord.get_job("slow", job.id).state is JobState.ACTIVE)
    assert any_coord.cancel_job("slow", job.id, terminate=True)
    assert any_coord.get_job("slow", job.id).state is JobState.CANCELLED
    nxt = any_coord.enqueue_job("slow", record_data(prefix))
    assert any_coord.wait_for_job("slow", nxt.id, timeout=WAIT_S).state is JobState.COMPLETED  # the slot was freed
    assert any_coord.get_job("slow", job.id).state is JobState.CANCELLED


def test_a_job_whose_worker_is_killed_completes_once(any_coord, prefix, redis_client) -> None:
    import os
    import signal

    any_coord.create_queue("q")
    first = any_coord.register_worker("q", processors.record, pool="prefork", concurrency=1)
    job = any_coord.enqueue_job("q", record_data(prefix, seconds=3))
    # the handler has begun (active alone can precede it): the kill lands mid-job
    wait_until(lambda: redis_client.lrange(f"{prefix}:test:runs", 0, -1) == [job.id])
    os.killpg(first.pid, signal.SIGKILL)  # the worker and its pool child, mid-job
    any_coord.register_worker("q", processors.record, pool="prefork", concurrency=1)
    done = any_coord.wait_for_job("q", job.id, timeout=WAIT_S)
    assert done.state is JobState.COMPLETED and done.stalled_count == 1
    assert redis_client.lrange(f"{prefix}:test:runs", 0, -1) == [job.id, job.id]  # ran twice, completed once
    completed = [f for _, f in redis_client.xrange(any_coord.keys.for_queue("q").events)
                 if f["event"] == "completed" and f["job_id"] == job.id]
    assert len(completed) == 1
