"""Fixtures: a coordinator on the real Redis with its own key prefix, cleaned up after each test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis

from coordinator import JobQueueCoordinator

REDIS_URL = os.environ.get("JQC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("JQC_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
FAST_SWEEPS = dict(stalled_interval_ms=1000, lock_duration_ms=2000, promote_interval_ms=50)


def _redis_or_fail() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        client.ping()
    except redis.ConnectionError as exc:  # never skip: a test run without Redis is a failure
        pytest.fail(f"Redis at {REDIS_URL} is not reachable: {exc}")
    return client


def delete_prefix(client: redis.Redis, prefix: str) -> None:
    """Delete every key of one test prefix (SCAN + UNLINK; never FLUSHALL)."""
    batch = []
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            client.unlink(*batch)
            batch.clear()
    if batch:
        client.unlink(*batch)


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = _redis_or_fail()
    yield client
    client.close()


@pytest.fixture
def prefix(redis_client: redis.Redis) -> Iterator[str]:
    name = f"t{uuid.uuid4().hex[:10]}"
    yield name
    delete_prefix(redis_client, name)


@pytest.fixture
def coord(prefix: str) -> Iterator[JobQueueCoordinator]:
    """A coordinator with fast sweeps, so stalled and delayed jobs move within a test's time."""
    coordinator = JobQueueCoordinator(REDIS_URL, prefix=prefix, **FAST_SWEEPS)
    yield coordinator
    coordinator.shutdown(timeout=10)


@pytest.fixture(params=["redis", "amqp"])
def any_coord(request: pytest.FixtureRequest, prefix: str) -> Iterator[JobQueueCoordinator]:
    """A coordinator whose messages go through Redis, then one whose go through RabbitMQ
    (registry, results and beat in Redis either way)."""
    broker_url = AMQP_URL if request.param == "amqp" else None
    coordinator = JobQueueCoordinator(REDIS_URL, broker_url=broker_url, prefix=prefix, **FAST_SWEEPS)
    yield coordinator
    queues = coordinator.get_queue_names()
    coordinator.shutdown(timeout=10)
    if broker_url:
        _delete_amqp_queues(coordinator, queues)


def _delete_amqp_queues(coordinator: JobQueueCoordinator, queues: list[str]) -> None:
    with coordinator.app.connection_for_write() as conn:
        channel = conn.default_channel
        for queue in queues:
            channel.queue_delete(coordinator.celery_queue(queue))
            channel.exchange_delete(coordinator.celery_queue(queue))
