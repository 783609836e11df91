"""Beat subprocesses of a test's prefix (fixture ``beats``, loaded as a plugin by tests/conftest.py)
and reading the jobs a schedule created."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from coordinator import Job, JobQueueCoordinator, JobState
from coordinator.recurring.manager import run_id
from coordinator.registry.codec import to_ms
from tests.support.env import REDIS_URL

ALL_STATES = [state.value for state in JobState]
FIRED = re.compile(r"\[([\d-]+ [\d:]+,\d+): \w+/\w+\] beat: fired (\S+) at (\S+): (\w+)")


class Beat:
    """One beat subprocess of a prefix, its output in a log file."""

    def __init__(self, prefix: str, log_path: Path, module: str, env: dict[str, str] | None = None) -> None:
        env = {**os.environ, "REDIS_URL": REDIS_URL, "JQC_PREFIX": prefix, "LOG_LEVEL": "INFO", **(env or {})}
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p or os.getcwd() for p in sys.path))
        self.log_path = log_path
        with open(log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", module], env=env, stdin=subprocess.DEVNULL, stdout=log_file,
                stderr=subprocess.STDOUT, start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def fired(self) -> list[tuple[str, str]]:
        """(tick, status) of every tick this beat fired."""
        return [(tick, status) for _, _, tick, status in FIRED.findall(self.log())]

    def fire_lags_ms(self) -> list[int]:
        """For every tick this beat fired: how long after the tick it fired it (from its log)."""
        lags = []
        for logged, _, tick, _ in FIRED.findall(self.log()):
            fired_at = datetime.strptime(logged, "%Y-%m-%d %H:%M:%S,%f").astimezone()  # local time
            lags.append(to_ms(fired_at) - to_ms(datetime.fromisoformat(tick)))
        return lags

    def kill(self) -> None:
        """SIGKILL: no lock release, no clean-up."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def beats(prefix: str, tmp_path: Path) -> Iterator[Callable[..., Beat]]:
    """Start beat subprocesses of the test's prefix; all are stopped after the test."""
    started: list[Beat] = []

    def start(module: str = "coordinator.beat", **env: str) -> Beat:
        beat = Beat(prefix, tmp_path / f"beat-{len(started)}.log", module, env)
        started.append(beat)
        return beat

    yield start
    for beat in started:
        beat.stop()


def runs(coord: JobQueueCoordinator, queue: str, key: str) -> list[Job]:
    """The jobs a schedule created, oldest tick first."""
    jobs = [job for job in coord.get_jobs(queue, ALL_STATES) if job.schedule_key == key]
    return sorted(jobs, key=lambda job: job.created_at)


def tick_ms(jobs: list[Job]) -> list[int]:
    return [to_ms(job.created_at) for job in jobs]


def assert_one_job_per_tick(coord: JobQueueCoordinator, queue: str, key: str, every: int) -> list[int]:
    """Ticks on the pattern, strictly increasing, each job id naming its tick, counted once."""
    jobs = runs(coord, queue, key)
    ticks = tick_ms(jobs)
    assert all(tick % every == 0 for tick in ticks), ticks
    assert all(b - a >= every for a, b in zip(ticks, ticks[1:])), ticks
    assert [job.id for job in jobs] == [run_id(key, tick) for tick in ticks]
    [schedule] = [s for s in coord.get_recurring_jobs(queue) if s.key == key]
    assert schedule.run_count == len(jobs)
    return ticks
