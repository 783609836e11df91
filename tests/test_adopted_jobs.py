"""Adopted Celery tasks are jobs: the registry's guarantees for `.delay()` with real workers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from coordinator import JobQueueCoordinator, JobState
from tests import adopted_app
from tests.conftest import FAST_SWEEPS, REDIS_URL
from tests.test_processing import WAIT_S, wait_until


@pytest.fixture
def adopted(prefix: str) -> Iterator[JobQueueCoordinator]:
    """The test app adopted by a coordinator with a 2 s lock and 1 s sweeps."""
    coordinator = JobQueueCoordinator(REDIS_URL, prefix=prefix, app=adopted_app.app, **FAST_SWEEPS)
    yield coordinator
    coordinator.shutdown(timeout=10)


def _log_of(coord: JobQueueCoordinator, worker_id: str) -> str:
    return (coord.workers.log_dir / f"{worker_id}.log").read_text()


def test_a_long_adopted_task_with_a_short_lock_runs_once_and_completes(adopted, prefix, redis_client) -> None:
    """5 s task, 2 s lock, 1 s stalled sweeps: the sweep must neither fail nor recover it."""
    adopted.create_queue("legacy")
    worker = adopted.register_worker("legacy", pool="prefork", concurrency=1)
    runs = f"{prefix}:test:runs"
    result = adopted_app.slow.apply_async((runs, 5), queue=adopted.celery_queue("legacy"))
    wait_until(lambda: (j := adopted.get_job("legacy", result.id)) is not None and j.state is JobState.ACTIVE)
    done = wait_until(lambda: (j := adopted.get_job("legacy", result.id)).state.is_final and j, WAIT_S)
    assert done.state is JobState.COMPLETED and done.attempts_made == 1 and done.stalled_count == 0
    assert len(redis_client.lrange(runs, 0, -1)) == 1
    assert "maintenance sweep failed" not in _log_of(adopted, worker.id)
