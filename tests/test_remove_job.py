"""`remove_job`: deletes a job that is not running, with its logs."""

from __future__ import annotations

import pytest
import redis

from coordinator import JobNotFoundError, JobQueueCoordinator, JobState


def test_remove_a_waiting_job_cancels_it_then_deletes_it(coord: JobQueueCoordinator, redis_client: redis.Redis) -> None:
    coord.create_queue("q")
    job = coord.enqueue_job("q", {"n": 1})
    assert coord.remove_job("q", job.id) is True
    assert coord.get_job("q", job.id) is None
    assert coord.get_queue_status("q").counts.model_dump() == dict.fromkeys(
        ("waiting", "waiting_children", "active", "delayed", "completed", "failed", "cancelled"), 0)
    assert [e.event for e in coord.events("q") if e.job_id == job.id] == ["waiting", "cancelled"]
    assert not redis_client.exists(coord.keys.for_queue("q").job(job.id))
    with pytest.raises(JobNotFoundError):
        coord.remove_job("q", job.id)


def test_remove_a_finished_job_deletes_its_logs(coord: JobQueueCoordinator, redis_client: redis.Redis) -> None:
    coord.create_queue("q")
    job = coord.enqueue_job("q", {"n": 1}, delay=60_000)
    assert coord.get_job("q", job.id).state is JobState.DELAYED
    assert coord.cancel_job("q", job.id)
    logs = coord.keys.for_queue("q").logs(job.id)
    redis_client.rpush(logs, "a line")  # as a processor's job.log() would have written
    assert coord.remove_job("q", job.id) is True
    assert coord.get_job("q", job.id) is None and not redis_client.exists(logs)
    assert coord.get_queue_status("q").counts.cancelled == 0


def test_an_active_job_is_not_removed(coord: JobQueueCoordinator) -> None:
    from tests import worker_processors

    coord.create_queue("q")
    coord.register_worker("q", worker_processors.hang, pool="solo")
    job = coord.enqueue_job("q", {"seconds": 30})
    for event in coord.events("q", follow=True, idle_timeout_s=30):
        if event.job_id == job.id and event.event == "active":
            break
    assert coord.get_job("q", job.id).state is JobState.ACTIVE
    assert coord.remove_job("q", job.id) is False
    assert coord.get_job("q", job.id).state is JobState.ACTIVE
    assert coord.cancel_job("q", job.id, terminate=True)
