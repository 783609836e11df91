"""QueueManager against the real Redis: lifecycle, config updates, status, errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from coordinator import JobOptions, JobQueueCoordinator, QueueConfig, QueueNotFoundError, RateLimit


def test_create_queue_is_idempotent_and_updates_config(coord: JobQueueCoordinator) -> None:
    first = coord.create_queue("photos")
    again = coord.create_queue("photos")
    assert first == again
    assert first.celery_queue == coord.celery_queue("photos")
    assert not first.paused

    updated = coord.create_queue(QueueConfig(name="photos", default_job_options=JobOptions(priority=2),
                                             limiter=RateLimit(max=5, duration=1000)))
    assert updated.config.default_job_options.priority == 2
    assert coord.get_queue("photos").config.limiter == RateLimit(max=5, duration=1000)
    assert updated.created_at == first.created_at


def test_queue_names_and_delete(coord: JobQueueCoordinator, redis_client, prefix: str) -> None:
    coord.create_queue("a")
    coord.create_queue("b")
    coord.enqueue_job("a", {"n": 1})
    coord.schedule_job("a", "later", {"n": 2}, delay=60_000)
    assert coord.get_queue_names() == ["a", "b"]

    coord.delete_queue("a")
    assert coord.get_queue_names() == ["b"]
    assert not [k for k in redis_client.scan_iter(match=f"{prefix}:{{a}}*")]
    with pytest.raises(QueueNotFoundError):
        coord.get_queue("a")


def test_unknown_queue_raises_everywhere(coord: JobQueueCoordinator) -> None:
    for call in (
        lambda: coord.get_queue("nope"),
        lambda: coord.get_queue_status("nope"),
        lambda: coord.pause_queue("nope"),
        lambda: coord.resume_queue("nope"),
        lambda: coord.delete_queue("nope"),
        lambda: coord.enqueue_job("nope", {}),
        lambda: coord.get_job("nope", "x"),
        lambda: coord.get_jobs("nope", ["waiting"]),
    ):
        with pytest.raises(QueueNotFoundError, match="nope"):
            call()
    assert coord.get_queue_names() == []


def test_bad_queue_config_names_the_field(coord: JobQueueCoordinator, redis_client, prefix: str) -> None:
    with pytest.raises(ValidationError, match="name"):
        coord.create_queue("bad name!")
    with pytest.raises(ValidationError, match="max"):
        coord.create_queue("q", limiter=RateLimit(max=0, duration=1000))
    with pytest.raises(ValidationError, match="colour"):
        coord.create_queue("q", colour="red")
    assert list(redis_client.scan_iter(match=f"{prefix}:*")) == []


def test_pause_and_resume_show_in_status(coord: JobQueueCoordinator) -> None:
    coord.create_queue("photos")
    coord.enqueue_job("photos", {"n": 1})
    coord.pause_queue("photos")
    status = coord.get_queue_status("photos")
    assert status.paused and status.counts.waiting == 1
    assert status.health.status.value == "unhealthy"  # jobs waiting, no live worker
    coord.resume_queue("photos")
    assert not coord.get_queue_status("photos").paused
