"""Helpers over jobs that several test modules share: the data of a recording job, overlap."""

from __future__ import annotations

from typing import Any

from coordinator import Job
from tests.support.env import REDIS_URL


def record_data(prefix: str, **extra: Any) -> dict[str, Any]:
    """Data for `tests.processors.record` (and the async ones): where the run is recorded."""
    return {"url": REDIS_URL, "key": f"{prefix}:test:runs", **extra}


def max_overlap(jobs: list[Job]) -> int:
    """Most jobs running at one moment, from their recorded start and finish times."""
    edges = []
    for job in jobs:
        edges += [(job.processed_on, 1), (job.finished_on, -1)]
    running = peak = 0
    for _, delta in sorted(edges, key=lambda edge: (edge[0], edge[1])):  # a finish before a start at a tie
        running += delta
        peak = max(peak, running)
    return peak
