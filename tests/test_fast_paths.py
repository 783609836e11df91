"""The enqueue and retention fast paths behave exactly as the plain paths they shortcut."""

from __future__ import annotations

import pydantic
import pytest
import redis

from coordinator import BulkJob, JobOptions, JobQueueCoordinator, QueueConfig, QueueNotFoundError
from coordinator.models import Retention
from coordinator.registry.registry import BATCH_SIZE


def test_bulk_plain_dicts_get_the_same_jobs_as_validated_items(coord: JobQueueCoordinator) -> None:
    coord.create_queue(QueueConfig(name="fp", default_job_options=JobOptions(priority=7, max_retries=5)))
    jobs = coord.enqueue_bulk("fp", [
        {"data": 1}, {"data": {"x": 2}, "name": "named"}, BulkJob(data=3), {"data": 4, "options": {"priority": 2}},
    ])
    assert [job.data for job in jobs] == [1, {"x": 2}, 3, 4]
    assert jobs[1].name == "named"
    assert [job.options.priority for job in jobs] == [7, 7, 7, 2]
    assert all(job.options.max_retries == 5 for job in jobs)
    stored = [coord.get_job("fp", job.id) for job in jobs]
    assert [job.options.priority for job in stored] == [7, 7, 7, 2]
    assert [job.data for job in stored] == [1, {"x": 2}, 3, 4]


@pytest.mark.parametrize("bad", [{"data": 1, "name": 5}, {"data": 1, "bogus": True}])
def test_bulk_rejects_bad_items_before_writing_any(coord: JobQueueCoordinator, bad: dict) -> None:
    coord.create_queue("fp")
    with pytest.raises(pydantic.ValidationError):
        coord.enqueue_bulk("fp", [{"data": 0}, bad])
    assert coord.get_queue_status("fp").counts.waiting == 0


def test_default_options_follow_a_config_update(coord: JobQueueCoordinator) -> None:
    coord.create_queue(QueueConfig(name="fp", default_job_options=JobOptions(priority=7)))
    assert coord.enqueue_job("fp", None).options.priority == 7
    coord.create_queue(QueueConfig(name="fp", default_job_options=JobOptions(priority=2)))
    assert coord.enqueue_job("fp", None).options.priority == 2
    assert coord.enqueue_job("fp", None, priority=9).options.priority == 9


def test_trim_removes_all_excess_not_one_batch(coord: JobQueueCoordinator, redis_client: redis.Redis) -> None:
    """Under a steady stream more than one batch finishes between two sweeps; one sweep trims them all."""
    keep = 5
    total = 2 * BATCH_SIZE + 100
    coord.create_queue("fp")
    registry = coord._registry
    jobs = coord.enqueue_bulk("fp", [{"data": i} for i in range(total)])
    for job in jobs:
        assert registry.start("fp", job.id, 1, "w", "h", 10_000, None).status == "active"
        assert registry.finish("fp", job.id, 1, "completed", payload="null")
    removed = registry.trim("fp", Retention(completed_count=keep, completed_age_s=None))
    assert removed == total - keep
    assert coord.get_queue_status("fp").counts.completed == keep
    qk = registry.queue_keys("fp")
    assert not redis_client.exists(qk.job(jobs[0].id))
    assert redis_client.exists(qk.job(jobs[-1].id))


def test_bulk_over_several_batches_keeps_order_and_existing_jobs(coord: JobQueueCoordinator) -> None:
    """Batches are sent while the previous one's snapshots are built: order and existing ids hold."""
    coord.create_queue("fp")
    existing = coord.enqueue_job("fp", "old", job_id="j-700")
    total = 2 * BATCH_SIZE + 200
    jobs = coord.enqueue_bulk("fp", [{"data": i, "options": {"job_id": f"j-{i}"}} for i in range(total)])
    assert [job.id for job in jobs] == [f"j-{i}" for i in range(total)]
    assert jobs[700].data == "old" and jobs[700].created_at == existing.created_at
    assert [job.data for job in jobs[:700]] == list(range(700))
    assert coord.get_queue_status("fp").counts.waiting == total


def test_bulk_to_a_missing_queue_writes_nothing(coord: JobQueueCoordinator, redis_client: redis.Redis) -> None:
    coord.create_queue("fp")
    redis_client.delete(coord._registry.queue_keys("fp").meta)  # gone behind the producer's config cache
    with pytest.raises(QueueNotFoundError):
        coord.enqueue_bulk("fp", [{"data": i} for i in range(3 * BATCH_SIZE)])
    assert redis_client.zcard(coord._registry.queue_keys("fp").index("waiting")) == 0
