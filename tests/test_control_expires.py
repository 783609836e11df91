"""Start deadlines (`expires`) through a real `celery worker`: an expired job never runs."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from coordinator import JobQueueCoordinator, JobState
from tests import processors
from tests.support.env import REDIS_URL

WAIT_S = 30


def record_data(prefix: str, **extra) -> dict:
    return {"url": REDIS_URL, "key": f"{prefix}:test:runs", **extra}


def cancelled_events(coord: JobQueueCoordinator, queue: str, job_id: str) -> list[dict]:
    return [e.data for e in coord.events(queue) if e.job_id == job_id and e.event == "cancelled"]


def test_an_expired_waiting_job_never_runs(coord: JobQueueCoordinator, prefix, redis_client) -> None:
    coord.create_queue("q")
    expired = coord.enqueue_job("q", record_data(prefix), expires=200)
    past = coord.enqueue_job("q", record_data(prefix), expires=datetime.now(timezone.utc) - timedelta(seconds=1))
    time.sleep(0.5)  # both deadlines pass while no worker exists
    coord.register_worker("q", processors.record, pool="solo")
    later = coord.enqueue_job("q", record_data(prefix))  # behind the expired ones in the queue
    assert coord.wait_for_job("q", later.id, timeout=WAIT_S).state is JobState.COMPLETED
    for job_id in (expired.id, past.id):
        job = coord.wait_for_job("q", job_id, timeout=WAIT_S)
        assert job.state is JobState.CANCELLED
        assert job.failed_reason == "expired"
        assert job.attempts_made == 0 and job.processed_on is None
        assert cancelled_events(coord, "q", job_id) == [{"from": "waiting", "reason": "expired"}]
    assert redis_client.lrange(f"{prefix}:test:runs", 0, -1) == [later.id]
    assert coord.get_queue_status("q").counts.cancelled == 2


def test_an_expired_delayed_job_never_runs(coord: JobQueueCoordinator, prefix, redis_client) -> None:
    coord.create_queue("q")
    coord.register_worker("q", processors.record, pool="solo")
    # due in 1.5 s, but it must start within 0.5 s of being enqueued: it can never start
    job = coord.schedule_job("q", "late", record_data(prefix), delay=1500, expires=500)
    assert coord.get_job("q", job.id).state is JobState.DELAYED
    done = coord.wait_for_job("q", job.id, timeout=WAIT_S)
    assert done.state is JobState.CANCELLED and done.failed_reason == "expired"
    assert done.attempts_made == 0
    assert cancelled_events(coord, "q", job.id) == [{"from": "delayed", "reason": "expired"}]
    witness = coord.enqueue_job("q", record_data(prefix))  # the worker is alive and running jobs
    assert coord.wait_for_job("q", witness.id, timeout=WAIT_S).state is JobState.COMPLETED
    assert redis_client.lrange(f"{prefix}:test:runs", 0, -1) == [witness.id]


def test_jobs_with_a_far_deadline_run(coord: JobQueueCoordinator, prefix, redis_client) -> None:
    coord.create_queue("q")
    coord.register_worker("q", processors.record, pool="solo")
    soon = coord.enqueue_job("q", record_data(prefix), expires=60_000)
    at = coord.enqueue_job("q", record_data(prefix), expires=datetime.now(timezone.utc) + timedelta(hours=1))
    delayed = coord.schedule_job("q", "later", record_data(prefix), delay=300, expires=60_000)
    for job in (soon, at, delayed):
        assert coord.wait_for_job("q", job.id, timeout=WAIT_S).state is JobState.COMPLETED
    assert sorted(redis_client.lrange(f"{prefix}:test:runs", 0, -1)) == sorted([soon.id, at.id, delayed.id])


@pytest.mark.parametrize("bad", [0, -5, 1.5, True, "soon", datetime(2030, 1, 1)])
def test_a_bad_expires_is_refused_naming_the_field_and_writes_nothing(coord: JobQueueCoordinator, bad) -> None:
    coord.create_queue("q")
    with pytest.raises(ValidationError) as caught:
        coord.enqueue_job("q", {"x": 1}, expires=bad)
    assert "expires" in str(caught.value)
    assert coord.get_queue_status("q").counts.waiting == 0
