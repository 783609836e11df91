"""The fixture of the adopted-app tests: `tests.adopted_app` adopted by a coordinator with fast
sweeps, its `legacy.*` tasks routed to the coordinator queue ``legacy``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from celery import Celery

from coordinator import JobQueueCoordinator
from tests import adopted_app
from tests.support.env import FAST_SWEEPS, REDIS_URL

ADOPTED_QUEUE = "legacy"


def reroute(app: Celery) -> None:
    """Celery builds its router once: make it read the changed task_routes."""
    app.amqp.flush_routes()
    app.amqp.__dict__.pop("router", None)


@pytest.fixture
def adopted(prefix: str) -> Iterator[JobQueueCoordinator]:
    """The test app adopted by a coordinator with a 2 s lock and 1 s sweeps, queue ``legacy``."""
    coordinator = JobQueueCoordinator(REDIS_URL, prefix=prefix, app=adopted_app.app, **FAST_SWEEPS)
    coordinator.create_queue(ADOPTED_QUEUE)
    adopted_app.app.conf.task_routes = {"legacy.*": {"queue": coordinator.celery_queue(ADOPTED_QUEUE)}}
    reroute(adopted_app.app)
    yield coordinator
    adopted_app.app.conf.task_routes = None
    reroute(adopted_app.app)
    coordinator.shutdown(timeout=10)
