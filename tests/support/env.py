"""The test environment: which Redis and RabbitMQ the tests use.

Redis: ``JQC_TEST_REDIS_URL``, else the Redis on 127.0.0.1:6379 if it answers, else a throwaway
`redis-server` started here (for the whole run; its URL is put in ``JQC_TEST_REDIS_URL`` so worker
subprocesses use it too). RabbitMQ: ``JQC_TEST_AMQP_URL`` (see tests/support/needs.py).
"""

from __future__ import annotations

import atexit
import os
import shutil

import pytest
import redis

from coordinator import JobQueueCoordinator
from coordinator.redis_server import RedisServer, reachable
from tests.support.needs import AMQP_URL, require_rabbitmq

__all__ = ["AMQP_URL", "FAST_SWEEPS", "REDIS_URL", "delete_amqp_queues", "redis_or_fail", "require_rabbitmq"]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
FAST_SWEEPS = dict(stalled_interval_ms=1000, lock_duration_ms=2000, promote_interval_ms=50)


def _test_redis_url() -> str:
    """The Redis of this run (see the module docstring)."""
    given = os.environ.get("JQC_TEST_REDIS_URL")
    if given or reachable(DEFAULT_REDIS_URL):
        return given or DEFAULT_REDIS_URL
    if shutil.which("redis-server") is None:
        return DEFAULT_REDIS_URL  # every test that needs it fails, naming the URL
    server = RedisServer().start()
    atexit.register(server.close)
    os.environ["JQC_TEST_REDIS_URL"] = server.url
    return server.url


REDIS_URL = _test_redis_url()


def redis_or_fail() -> redis.Redis:
    """A client of the test Redis; the test fails (never skips) when it does not answer."""
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis at {REDIS_URL} is not reachable and `redis-server` is not installed: {exc}")
    return client


def delete_amqp_queues(coordinator: JobQueueCoordinator, queues: list[str]) -> None:
    """Remove the RabbitMQ queues and exchanges a test's coordinator declared."""
    with coordinator.app.connection_for_write() as conn:
        channel = conn.default_channel
        for queue in queues:
            channel.queue_delete(coordinator.celery_queue(queue))
            channel.exchange_delete(coordinator.celery_queue(queue))
