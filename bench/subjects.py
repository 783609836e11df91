"""The systems under test, behind one small interface: the coordinator and two raw Celery apps.

Each subject can enqueue one job, enqueue many, start and stop a worker (prefork, 2 processes),
count finished jobs cheaply, run one round trip, and purge what it left in Redis.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import redis
from celery import group

from bench import celery_side
from bench.jobs import noop
from coordinator import JobQueueCoordinator
from coordinator.workers.process import stop as stop_process

QUEUE = "bench"
POOL = "prefork"
CONCURRENCY = 2
#: The threads pool's figure: Celery's threads pool with 8 threads (``-P threads -c 8``).
THREADS = 8
#: The job's data: a 100-byte string, so memory per waiting job is measured with a 100-byte payload.
PAYLOAD = "x" * 100
#: Jobs per `enqueue_bulk` call, and per Celery `group` (the registry writes 500 per script call).
BULK_CHUNK = 5000


def tree_cpu(pids: list[int]) -> float:
    """CPU seconds (user + system) workers used so far: each main process, every pool child, and
    the children that already exited (RQ forks one per job)."""
    total = 0.0
    for pid in pids:
        try:
            main = psutil.Process(pid)
            total += sum(main.cpu_times()[:4])
            total += sum(sum(proc.cpu_times()[:2]) for proc in main.children(recursive=True))
        except psutil.NoSuchProcess:
            pass
    return total


def tree_rss(pids: list[int]) -> int:
    """Resident bytes of workers: each main process and every pool child."""
    total = 0
    for pid in pids:
        try:
            main = psutil.Process(pid)
            total += sum(proc.memory_info().rss for proc in [main, *main.children(recursive=True)])
        except psutil.NoSuchProcess:
            pass
    return total


class InProcessPhases:
    """The timed phases of a subject whose client runs in the benchmark's own process."""

    def enqueue_one(self, data: Any) -> None:
        raise NotImplementedError

    def enqueue_many(self, items: list[Any]) -> None:
        raise NotImplementedError

    def round_trip(self, data: Any) -> None:
        raise NotImplementedError

    @property
    def worker_pids(self) -> list[int]:
        return [self.worker_pid] if self.worker_pid else []  # type: ignore[attr-defined]

    def enqueue_phase(self, jobs: int) -> float:
        """N calls of one job each; wall seconds."""
        started = time.perf_counter()
        for _ in range(jobs):
            self.enqueue_one(PAYLOAD)
        return time.perf_counter() - started

    def bulk_phase(self, jobs: int) -> float:
        started = time.perf_counter()
        self.enqueue_many([PAYLOAD] * jobs)
        return time.perf_counter() - started

    def round_trips(self, samples: int) -> list[float]:
        """Latencies (ms) of sequential enqueue-and-wait round trips."""
        latencies = []
        for _ in range(samples):
            started = time.perf_counter()
            self.round_trip(PAYLOAD)
            latencies.append((time.perf_counter() - started) * 1000)
        return latencies


class CoordinatorSubject(InProcessPhases):
    """The coordinator at its defaults, with the queue's processor run by a managed worker."""

    name = "coordinator"
    poll_command = "hget"

    def __init__(self, url: str, **settings: Any) -> None:
        self.coord = JobQueueCoordinator(url, prefix="bench", **settings)
        self.coord.create_queue(QUEUE)
        self._worker_id: str | None = None
        self.worker_pid = 0

    def enqueue_one(self, data: Any) -> None:
        self.coord.enqueue_job(QUEUE, data)

    def enqueue_many(self, items: list[Any]) -> None:
        for start in range(0, len(items), BULK_CHUNK):
            self.coord.enqueue_bulk(QUEUE, [{"data": d} for d in items[start : start + BULK_CHUNK]])

    def start_worker(self, pool: str = POOL, concurrency: int = CONCURRENCY) -> None:
        status = self.coord.register_worker(QUEUE, processor=noop, pool=pool, concurrency=concurrency)
        self._worker_id = status.id
        self.worker_pid = status.pid

    def stop_worker(self) -> None:
        if self._worker_id is not None:
            self.coord.close_worker(self._worker_id, timeout=30)
            self._worker_id = None

    def finished(self) -> int:
        """Completed jobs so far: the running total the finish script keeps in the queue's metrics."""
        return int(self.coord._redis.hget(self.coord._registry.queue_keys(QUEUE).metrics, "all:c") or 0)

    def round_trip(self, data: Any) -> None:
        job = self.coord.enqueue_job(QUEUE, data)
        self.coord.wait_for_job(QUEUE, job.id, timeout=30)

    def retained_completed(self) -> int:
        return self.coord._redis.zcard(self.coord._registry.queue_keys(QUEUE).index("completed"))

    def purge(self) -> None:
        self.coord.delete_queue(QUEUE)
        self.coord.create_queue(QUEUE)

    def close(self) -> None:
        self.coord.shutdown(timeout=30)


class GroupedCoordinatorSubject(CoordinatorSubject):
    """The coordinator with every job in one of GROUPS groups (round-robin, docs/fairness.md): the
    cost of a grouped job against a plain one."""

    name = "coordinator-grouped"
    GROUPS = 10

    def __init__(self, url: str, **settings: Any) -> None:
        self.coord = JobQueueCoordinator(url, prefix="bench-grouped", **settings)
        self.coord.create_queue(QUEUE)
        self._worker_id = None
        self.worker_pid = 0
        self._next = 0

    def _group(self) -> str:
        self._next += 1
        return f"tenant-{self._next % self.GROUPS}"

    def enqueue_one(self, data: Any) -> None:
        self.coord.enqueue_job(QUEUE, data, group=self._group())

    def enqueue_many(self, items: list[Any]) -> None:
        for start in range(0, len(items), BULK_CHUNK):
            self.coord.enqueue_bulk(QUEUE, [{"data": d, "options": {"group": self._group()}}
                                            for d in items[start : start + BULK_CHUNK]])

    def round_trip(self, data: Any) -> None:
        job = self.coord.enqueue_job(QUEUE, data, group=self._group())
        self.coord.wait_for_job(QUEUE, job.id, timeout=30)


class CelerySubject(InProcessPhases):
    """Raw Celery: ``celery-defaults`` (Celery's own defaults) or ``celery-same`` (the
    coordinator's Celery settings), each with a Redis result backend in a database of its own."""

    poll_command = "dbsize"

    def __init__(self, variant: str, log_dir: Path) -> None:
        self.name = variant
        self.variant = variant
        self.app = celery_side.make_app(variant)
        self.task = self.app.tasks["bench.noop"]
        broker_db, backend_db = celery_side.DATABASES[variant]
        port = int(os.environ[celery_side.PORT_ENV])
        self.broker = redis.Redis(host="127.0.0.1", port=port, db=broker_db)
        self.results = redis.Redis(host="127.0.0.1", port=port, db=backend_db)
        self.log_path = log_dir / f"{variant}.log"
        self._process: subprocess.Popen[bytes] | None = None
        self.worker_pid = 0

    def fresh_app(self) -> None:
        """Drop the producer's state (result subscriptions) before the next phase."""
        self.app.close()
        self.app = celery_side.make_app(self.variant)
        self.task = self.app.tasks["bench.noop"]

    def enqueue_one(self, data: Any) -> None:
        self.task.apply_async((data,))

    def enqueue_many(self, items: list[Any]) -> None:
        for start in range(0, len(items), BULK_CHUNK):
            group(self.task.s(d) for d in items[start : start + BULK_CHUNK]).apply_async()

    def start_worker(self, pool: str = POOL, concurrency: int = CONCURRENCY) -> None:
        app = "bench.celery_side:" + ("same_app" if self.variant == "celery-same" else "defaults_app")
        argv = [sys.executable, "-m", "celery", "-A", app, "worker", "-P", pool, "-c", str(concurrency),
                "--without-gossip", "--without-mingle", "-n", f"{self.variant}@%h"]
        # celery-same runs the way a managed coordinator worker does: log level INFO (events off).
        argv += ["-l", "INFO"] if self.variant == "celery-same" else ["-l", "WARNING"]
        with open(self.log_path, "ab") as log_file:
            self._process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file,
                                             stderr=subprocess.STDOUT, start_new_session=True)
        self.worker_pid = self._process.pid

    def wait_consuming(self, timeout: float = 60) -> None:
        """Block until the worker runs a task (one warm-up round trip)."""
        self.task.apply_async((None,)).get(timeout=timeout)

    def stop_worker(self) -> None:
        if self._process is not None:
            stop_process(self._process, timeout=30)  # warm shutdown, then SIGKILL of its group
            self._process = None

    def finished(self) -> int:
        return int(self.results.dbsize())

    def round_trip(self, data: Any) -> None:
        self.task.apply_async((data,)).get(timeout=30)

    def retained_completed(self) -> int:
        return self.finished()

    def purge(self) -> None:
        self.broker.flushdb()
        self.results.flushdb()

    def close(self) -> None:
        self.stop_worker()
        self.app.close()


def default_log_dir() -> Path:
    path = Path(tempfile.gettempdir()) / "jqc-bench-logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def wait_finished(subject: Any, target: int, timeout: float,
                  interval: float = 0.01) -> tuple[float, int]:
    """Poll until ``target`` jobs finished; returns (monotonic time seen, number of polls)."""
    deadline = time.monotonic() + timeout
    polls = 0
    while True:
        polls += 1
        if subject.finished() >= target:
            return time.monotonic(), polls
        if time.monotonic() > deadline:
            raise TimeoutError(f"{subject.name}: {subject.finished()} of {target} jobs finished after {timeout} s")
        time.sleep(interval)
