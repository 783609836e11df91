"""A pytest plugin for testing code that uses the coordinator (what `celery.contrib.pytest` is to
Celery users). Enable it in a ``conftest.py``::

    pytest_plugins = ["coordinator.testing"]

Fixtures:

- ``coordinator_redis_url`` (session): ``--coordinator-redis-url`` or ``COORDINATOR_TEST_REDIS_URL``
  if given, else a throwaway `redis-server` on a free loopback port for the session.
- ``coordinator_settings``: keyword arguments for each test's coordinator (override it).
- ``coord_prefix``: a fresh key prefix; every key under it is deleted after the test.
- ``coord``: a `JobQueueCoordinator` on that Redis with that prefix, shut down after the test.
- ``coord_worker``: ``coord_worker(queue, processor=None, **worker_options)`` starts a real managed
  `celery worker` for the queue (creating the queue if needed) and returns its `WorkerStatus`.

`run_jobs(coord, queue, limit=None)` runs waiting jobs in the test's own process through the
workers' claim and finish scripts. Details: docs/testing.md.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from coordinator.demo.cleanup import delete_prefix_keys
from coordinator.errors import QueueNotFoundError
from coordinator.facade import JobQueueCoordinator
from coordinator.models import WorkerStatus
from coordinator.redis_server import RedisServer
from coordinator.testing.inline import run_jobs

__all__ = ["RedisServer", "run_jobs"]

URL_ENV = "COORDINATOR_TEST_REDIS_URL"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--coordinator-redis-url", default=None,
                     help=f"Redis for the coordinator fixtures (default: ${URL_ENV}, else a throwaway redis-server)")


@pytest.fixture(scope="session")
def coordinator_redis_url(pytestconfig: pytest.Config) -> Iterator[str]:
    """The Redis the coordinator fixtures use: the one given, else a throwaway `redis-server`."""
    given = pytestconfig.getoption("--coordinator-redis-url") or os.environ.get(URL_ENV)
    if given:
        yield given
        return
    with RedisServer() as server:
        yield server.url


@pytest.fixture
def coordinator_settings() -> dict[str, Any]:
    """Keyword arguments for the ``coord`` fixture's `JobQueueCoordinator` (override to change)."""
    return {}


@pytest.fixture
def coord_prefix(coordinator_redis_url: str) -> Iterator[str]:
    """A key prefix of this test alone; every key under it is deleted afterwards."""
    prefix = f"test-{uuid.uuid4().hex[:10]}"
    yield prefix
    client = redis.Redis.from_url(coordinator_redis_url, decode_responses=True)
    try:
        delete_prefix_keys(client, prefix)
    finally:
        client.close()


@pytest.fixture
def coord(coordinator_redis_url: str, coord_prefix: str,
          coordinator_settings: dict[str, Any]) -> Iterator[JobQueueCoordinator]:
    """A coordinator with the test's own prefix; its workers are stopped after the test."""
    coordinator = JobQueueCoordinator(coordinator_redis_url, prefix=coord_prefix, **coordinator_settings)
    yield coordinator
    coordinator.shutdown(timeout=10)


@pytest.fixture
def coord_worker(coord: JobQueueCoordinator) -> Iterator[Callable[..., WorkerStatus]]:
    """Start real managed workers: ``coord_worker(queue, processor=None, **worker_options)``.

    The processor must be importable (module level); the pool defaults to ``solo`` (one process).
    Returns once the worker consumes; the workers stop with the ``coord`` fixture.
    """

    def start(queue: str, processor: Callable[..., Any] | None = None, **options: Any) -> WorkerStatus:
        try:
            coord.get_queue(queue)
        except QueueNotFoundError:
            coord.create_queue(queue)
        options.setdefault("pool", "solo")
        return coord.register_worker(queue, processor, **options)

    yield start
