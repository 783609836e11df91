"""Graceful shutdown: shutdown() and SIGTERM let running jobs finish; a second signal stops at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from worker_processors import recorded

from coordinator import JobQueueCoordinator, JobState
from tests.support.env import REDIS_URL
from tests.support.pools import events, process_running, wait_until

TESTS = Path(__file__).parent


def test_shutdown_lets_the_running_job_finish(coord: JobQueueCoordinator) -> None:
    coord.create_queue("bye")
    worker = coord.register_worker("bye", recorded, pool="solo")
    running = coord.enqueue_job("bye", {"seconds": 1.5})
    queued = coord.enqueue_job("bye", {"seconds": 0.01})
    wait_until(lambda: coord.get_job("bye", running.id).state is JobState.ACTIVE, 15, "the job active")

    coord.shutdown(timeout=30)
    assert not process_running(worker.pid)
    assert coord.get_all_worker_status() == []
    done = coord.get_job("bye", running.id)
    assert done.state is JobState.COMPLETED and done.attempts_made == 1
    assert coord.get_job("bye", queued.id).state is JobState.WAITING


@pytest.fixture
def start_manager(prefix: str, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Starts a separate managing process (`pool_manager_script.py`) running one solo worker
    with ``count`` jobs of ``seconds`` queued; its output goes to ``manager.log`` in tmp_path."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(TESTS.parent)]))
    started: list[subprocess.Popen[bytes]] = []

    def start(count: int = 3, seconds: float = 2, hold: Path | None = None) -> subprocess.Popen[bytes]:
        args = [REDIS_URL, prefix, "sig", str(count), str(seconds)] + ([str(hold)] if hold else [])
        with open(tmp_path / "manager.log", "wb") as log:
            started.append(subprocess.Popen(
                [sys.executable, str(TESTS / "pool_manager_script.py"), *args],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            ))
        return started[-1]

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def manager(start_manager: Callable[..., subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """The managing process with 3 jobs of 2 s queued."""
    return start_manager()


def _worker(coord: JobQueueCoordinator) -> tuple[str, int]:
    """Heartbeat key and pid of the managing process's one worker."""
    key = coord.keys.worker(coord._redis.zrange(coord.keys.workers, 0, 0)[0])
    return key, int(coord._redis.hget(key, "pid"))


def _first_active(coord: JobQueueCoordinator) -> str:
    index = coord._registry.queue_keys("sig").index("active")
    return wait_until(lambda: coord._redis.zrange(index, 0, 0), 30, "a job active")[0]


def test_sigterm_lets_active_jobs_finish(coord: JobQueueCoordinator, manager: subprocess.Popen[bytes]) -> None:
    active = _first_active(coord)
    _, worker_pid = _worker(coord)
    manager.send_signal(signal.SIGTERM)
    assert manager.wait(30) == 128 + signal.SIGTERM
    assert not process_running(worker_pid)
    job = coord.get_job("sig", active)
    assert job.state is JobState.COMPLETED and job.attempts_made == 1
    counts = coord._registry.counts("sig")
    assert (counts.completed, counts.waiting, counts.active, counts.failed) == (1, 2, 0, 0)


def test_second_sigterm_stops_at_once_and_jobs_go_back_to_waiting(
        coord: JobQueueCoordinator, manager: subprocess.Popen[bytes], tmp_path: Path) -> None:
    active = _first_active(coord)
    _, worker_pid = _worker(coord)
    manager.send_signal(signal.SIGTERM)
    log = tmp_path / "manager.log"
    wait_until(lambda: "closing managed workers" in log.read_text(), 10, "the warm close to begin")
    manager.send_signal(signal.SIGTERM)
    # "at once" is the job left active: a warm close would have let its 2 s finish (no wall-time bound)
    assert manager.wait(30) == 128 + signal.SIGTERM
    assert not process_running(worker_pid)
    assert coord.get_job("sig", active).state is JobState.ACTIVE  # interrupted, not finished

    coord.register_worker("sig", recorded, pool="solo")
    for job in coord.get_jobs("sig", ["waiting", "active"]):
        assert coord.wait_for_job("sig", job.id, 30).state is JobState.COMPLETED
    assert coord.get_job("sig", active).attempts_made == 2
    assert [e["job_id"] for e in events(coord, "sig", "stalled")] == [active]
    assert coord._registry.counts("sig").completed == 3


def test_second_sigterm_while_the_main_thread_holds_a_lock_of_the_signal_path(
        coord: JobQueueCoordinator, start_manager: Callable[..., subprocess.Popen[bytes]], tmp_path: Path) -> None:
    """Both signals land while the main thread holds the supervisor's stop-event lock, which
    stopping the supervisor takes: a handler doing that work in the main thread waited for
    itself for ever (the CI hang: the second SIGTERM came while the first one's shutdown was
    inside Event.set). The lock is released once both were taken; then the kill goes on."""
    hold = tmp_path / "hold"
    manager = start_manager(count=1, seconds=6, hold=hold)
    active = _first_active(coord)
    _, worker_pid = _worker(coord)
    log = tmp_path / "manager.log"
    hold.touch()
    wait_until(lambda: "holding" in log.read_text(), 15, "the main thread to take the lock")
    manager.send_signal(signal.SIGTERM)
    wait_until(lambda: "closing managed workers" in log.read_text(), 10, "the warm close to begin")
    manager.send_signal(signal.SIGTERM)
    wait_until(lambda: "SIGTERM again" in log.read_text(), 10, "the second signal taken")
    assert "released" not in log.read_text()  # both signals were taken while the lock was held
    hold.unlink()
    assert manager.wait(30) == 128 + signal.SIGTERM
    assert "released" in log.read_text()
    assert not process_running(worker_pid)
    assert coord.get_job("sig", active).state is JobState.ACTIVE  # killed at once, not finished

    coord.register_worker("sig", recorded, pool="solo")
    assert coord.wait_for_job("sig", active, 30).state is JobState.COMPLETED
    assert coord.get_job("sig", active).attempts_made == 2
    assert [e["job_id"] for e in events(coord, "sig", "stalled")] == [active]
