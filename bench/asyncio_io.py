"""I/O-bound throughput per worker process: async processors against Celery's pools and arq.

    python -m bench.asyncio_io                  # 3,000 jobs per subject (300 for prefork -c 2)
    python -m bench.asyncio_io --quick          # 1,000 (150)

Every job waits 50 ms: ``await asyncio.sleep`` in the coordinator's ``async def`` processor and in
arq, ``time.sleep`` in Celery's task (a blocking I/O call, which is what a Celery task makes).
Subjects, each one worker process on one dedicated Redis: the coordinator (async processor,
concurrency 100), Celery prefork -c 2, Celery threads -c 100, arq (max_jobs 100; needs
``.venv-arq``, see `bench.arq_side`). The queue is filled first, then the worker starts; the rate
is measured from the first finished job to the last, so start-up does not count.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from bench import arq_side_paths, io_jobs
from bench.server import Counters, DedicatedRedis
from bench.subjects import default_log_dir, tree_cpu
from coordinator import JobQueueCoordinator
from coordinator.workers.process import stop as stop_process

CONCURRENCY = 100
QUEUE = "io"


class Finishes:
    """Polls a finished-jobs count from a thread: when the first and the last job finished, and
    the worker's CPU time at both (``pids``: the worker's process, once started)."""

    def __init__(self, count: Callable[[], int], target: int, timeout_s: float) -> None:
        self.count, self.target, self.timeout_s = count, target, timeout_s
        self.first = self.last = 0.0
        self.cpu_first = self.cpu_last = 0.0
        self.pids: list[int] = []
        self.polls = 0
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            done = self.count()
            self.polls += 1
            now = time.monotonic()
            if done and not self.first:
                self.first = now
            if self.first and not self.cpu_first and self.pids:  # the worker's pid may come a moment late
                self.cpu_first = tree_cpu(self.pids)
            if done >= self.target:
                self.last, self.cpu_last = now, tree_cpu(self.pids)
                return
            time.sleep(0.005)

    def rate(self) -> float:
        self._thread.join()
        if not self.last:
            raise TimeoutError(f"{self.count()} of {self.target} jobs finished within {self.timeout_s} s")
        return (self.target - 1) / (self.last - self.first)

    def result(self, client: redis.Redis, before: Counters, poll_command: str) -> dict[str, Any]:
        """jobs/s and the worker's CPU ms per job, both from the first finished job to the last;
        Redis's CPU ms and round trips per job from ``before`` (taken as the worker started) on."""
        rate = self.rate()
        delta = Counters.read(client)
        redis_cpu_ms = (delta.cpu_s - before.cpu_s) * 1000 / self.target
        per_job = delta.since(before, {poll_command: self.polls}).per_job(self.target)
        return {"rate": rate, "cpu_ms_per_job": (self.cpu_last - self.cpu_first) * 1000 / (self.target - 1),
                "redis_cpu_ms_per_job": redis_cpu_ms, "round_trips_per_job": per_job["round_trips"],
                "commands_per_job": per_job["commands"]}


def _spawn(argv: list[str], log_name: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with open(default_log_dir() / log_name, "ab") as log_file:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env, cwd=Path(__file__).parent.parent)


def coordinator(server: DedicatedRedis, jobs: int) -> dict[str, Any]:
    coord = JobQueueCoordinator(server.url, prefix="bench-io", log_level="WARNING")  # as the others run
    try:
        coord.create_queue(QUEUE)
        coord.enqueue_bulk(QUEUE, [{"data": i} for i in range(jobs)])
        metrics, client = coord.keys.for_queue(QUEUE).metrics, server.client()
        # the running total of completed jobs the finish script keeps in the queue's metrics
        finishes = Finishes(lambda: int(client.hget(metrics, "all:c") or 0), jobs, 600)
        before = Counters.read(client)
        worker = coord.register_worker(QUEUE, io_jobs.io_sleep_async, concurrency=CONCURRENCY, embed_beat=False)
        finishes.pids.append(worker.pid)
        return finishes.result(client, before, "hget")
    finally:
        coord.delete_queue(QUEUE)
        coord.shutdown(timeout=30)


def celery(server: DedicatedRedis, jobs: int, pool: str, concurrency: int) -> dict[str, Any]:
    counter = server.client(io_jobs.COUNTER_DB)
    counter.delete(io_jobs.COUNTER)
    task = io_jobs.celery_app.tasks["bench.io_sleep"]
    for _ in range(jobs):
        task.apply_async()
    finishes = Finishes(lambda: int(counter.get(io_jobs.COUNTER) or 0), jobs, 600)
    before = Counters.read(counter)
    process = _spawn([sys.executable, "-m", "celery", "-A", "bench.io_jobs:celery_app", "worker", "-P", pool,
                      "-c", str(concurrency), "-l", "WARNING", "--without-gossip", "--without-mingle",
                      "-n", f"bench-io-{pool}@%h"], f"io-celery-{pool}.log")
    finishes.pids.append(process.pid)
    try:
        return finishes.result(counter, before, "get")
    finally:
        stop_process(process, timeout=30)
        server.client(io_jobs.CELERY_DB).flushdb()  # the dedicated server's Celery database


def arq(server: DedicatedRedis, jobs: int) -> dict[str, Any] | None:
    python = arq_side_paths.python()
    if python is None:
        return None
    env = dict(os.environ, ARQ_MAX_JOBS=str(CONCURRENCY), PYTHONPATH=str(Path(__file__).parent.parent))
    counter = server.client(arq_side_paths.DB)
    counter.delete(io_jobs.COUNTER)
    subprocess.run([python, "-m", "bench.arq_side", "enqueue", str(jobs)], env=env, check=True,
                   cwd=Path(__file__).parent.parent)
    finishes = Finishes(lambda: int(counter.get(io_jobs.COUNTER) or 0), jobs, 600)
    before = Counters.read(counter)
    process = _spawn([python, "-m", "arq", "bench.arq_side.WorkerSettings"], "io-arq.log", env)
    finishes.pids.append(process.pid)
    try:
        return finishes.result(counter, before, "get")
    finally:
        stop_process(process, timeout=30)
        counter.flushdb()  # the dedicated server's arq database


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--quick", action="store_true", help="1,000 jobs per subject (150 for prefork -c 2)")
    args = parser.parse_args()
    jobs = 1000 if args.quick else args.jobs
    results: dict[str, Any] = {}
    with DedicatedRedis() as server:
        os.environ[io_jobs.PORT_ENV] = str(server.port)
        io_jobs.celery_app.conf.broker_url = server.url_for(io_jobs.CELERY_DB)
        results["coordinator async -c 100"] = coordinator(server, jobs)
        results["celery prefork -c 2"] = celery(server, max(50, jobs // 10 if not args.quick else 150), "prefork", 2)
        results["celery threads -c 100"] = celery(server, jobs, "threads", CONCURRENCY)
        results["arq max_jobs 100"] = arq(server, jobs)
    base = results["celery prefork -c 2"]["rate"]
    print(f"{'subject':<28}{'jobs/s':>10}{'× prefork -c 2':>16}{'CPU ms/job':>12}{'Redis CPU ms/job':>18}"
          f"{'round trips/job':>17}")
    for name, result in results.items():
        if result is None:
            print(f"{name:<28}{'(no .venv-arq: see bench/arq_side.py)':>38}")
            continue
        print(f"{name:<28}{result['rate']:>10.0f}{result['rate'] / base:>15.1f}×{result['cpu_ms_per_job']:>12.2f}"
              f"{result['redis_cpu_ms_per_job']:>18.3f}{result['round_trips_per_job']:>17.2f}")
    print(json.dumps({"jobs": jobs, "load_average": os.getloadavg(), "results": results}))


if __name__ == "__main__":
    main()
