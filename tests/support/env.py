"""The test environment: which Redis and RabbitMQ the tests use, and what a missing tool means.

Redis: ``JQC_TEST_REDIS_URL``, else the Redis on 127.0.0.1:6379 if it answers, else a throwaway
`redis-server` started here (for the whole run; its URL is put in ``JQC_TEST_REDIS_URL`` so worker
subprocesses use it too). RabbitMQ, network namespaces and `openssl` are optional on a laptop: a
test needing one that is missing is skipped with the reason, and fails in CI (``CI=true``).
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
from urllib.parse import urlsplit

import pytest
import redis

from coordinator import JobQueueCoordinator
from coordinator.redis_server import RedisServer, reachable

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
AMQP_URL = os.environ.get("JQC_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
FAST_SWEEPS = dict(stalled_interval_ms=1000, lock_duration_ms=2000, promote_interval_ms=50)
IN_CI = os.environ.get("CI", "").lower() == "true"


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


def skip_or_fail(missing: str | None) -> None:
    """Nothing if ``missing`` is None; else skip the test with that reason, or fail it in CI."""
    if missing is None:
        return
    if IN_CI:
        pytest.fail(f"CI must run this test: {missing}")
    pytest.skip(missing)


def rabbitmq_missing() -> str | None:
    """Why RabbitMQ at AMQP_URL cannot be used, or None if it answers."""
    parts = urlsplit(AMQP_URL)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), timeout=2).close()
    except OSError as exc:
        return f"RabbitMQ is not reachable at {parts.hostname}:{parts.port or 5672} ({exc}); set JQC_TEST_AMQP_URL"
    return None


def openssl_missing() -> str | None:
    """Why the `openssl` binary (test certificates) cannot be used, or None."""
    return None if shutil.which("openssl") else "the `openssl` binary is not installed (test certificates)"


def require_rabbitmq() -> None:
    skip_or_fail(rabbitmq_missing())


def require_openssl() -> None:
    skip_or_fail(openssl_missing())


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
