"""The cost of `get_queue_status` with 100 and with a million jobs in the queue (real registry state)."""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench.server import Counters, DedicatedRedis
from bench.subjects import CoordinatorSubject

#: Jobs per `enqueue_bulk` call while filling the large queue.
FILL_CHUNK = 10_000
CALLS = 300


def _fill(subject: CoordinatorSubject, queue: str, jobs: int) -> float:
    """Enqueue ``jobs`` small jobs with `enqueue_bulk`; returns the fill rate in jobs/s."""
    coord = subject.coord
    coord.create_queue(queue)
    started = time.perf_counter()
    for start in range(0, jobs, FILL_CHUNK):
        coord.enqueue_bulk(queue, [{"data": i} for i in range(start, min(jobs, start + FILL_CHUNK))])
    return jobs / (time.perf_counter() - started)


def _time_status(subject: CoordinatorSubject, server: DedicatedRedis, queue: str) -> dict[str, Any]:
    coord = subject.coord
    coord.get_queue_status(queue)  # warm: config cache, scripts, connection
    client = server.client()
    before = Counters.read(client)
    times = []
    for _ in range(CALLS):
        started = time.perf_counter()
        status = coord.get_queue_status(queue)
        times.append((time.perf_counter() - started) * 1000)
    after = Counters.read(client)
    times.sort()
    return {
        "waiting": status.counts.waiting, "p50_ms": statistics.median(times),
        "p99_ms": times[int(len(times) * 0.99) - 1], "cost_per_call": after.since(before).per_job(CALLS),
    }


def measure_status(subject: CoordinatorSubject, server: DedicatedRedis, big_jobs: int) -> dict[str, Any]:
    """Fill a 100-job and a ``big_jobs``-job queue, then time `get_queue_status` on each."""
    _fill(subject, "status-small", 100)
    fill_rate = _fill(subject, "status-big", big_jobs)
    small = _time_status(subject, server, "status-small")
    big = _time_status(subject, server, "status-big")
    return {"small": small, "big": big, "big_jobs": big_jobs, "fill_rate": fill_rate,
            "ratio": big["p50_ms"] / small["p50_ms"],
            "redis_used_memory_after_fill": server.client().info("memory")["used_memory"]}
