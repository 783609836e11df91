"""Fixtures: the `coordinator.testing` plugin's, on the test Redis (tests/support/env.py) with fast
sweeps, so stalled and delayed jobs move within a test's time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from coordinator import JobQueueCoordinator
from tests.support.env import (
    AMQP_URL,
    FAST_SWEEPS,
    REDIS_URL,
    delete_amqp_queues,
    redis_or_fail,
    require_rabbitmq,
)

pytest_plugins = ["coordinator.testing", "pytester", "tests.support.tls", "tests.support.beats",
                  "tests.support.adopted", "tests.support.report"]


@pytest.fixture(scope="session")
def coordinator_redis_url() -> str:
    return REDIS_URL


@pytest.fixture
def coordinator_settings() -> dict[str, Any]:
    return dict(FAST_SWEEPS)


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis_or_fail()
    yield client
    client.close()


@pytest.fixture
def prefix(redis_client: redis.Redis, coord_prefix: str) -> str:
    """The test's key prefix (the plugin's ``coord_prefix``: cleaned up after the test)."""
    return coord_prefix


@pytest.fixture(params=["redis", "amqp"])
def any_coord(request: pytest.FixtureRequest, prefix: str) -> Iterator[JobQueueCoordinator]:
    """A coordinator whose messages go through Redis, then one whose go through RabbitMQ
    (registry, results and beat in Redis either way)."""
    broker_url = None
    if request.param == "amqp":
        require_rabbitmq()
        broker_url = AMQP_URL
    coordinator = JobQueueCoordinator(REDIS_URL, broker_url=broker_url, prefix=prefix, **FAST_SWEEPS)
    yield coordinator
    queues = coordinator.get_queue_names()
    coordinator.shutdown(timeout=10)
    if broker_url:
        delete_amqp_queues(coordinator, queues)
