"""The trivial job of the coordinator side: the same work as `bench.celery_side`'s ``noop``."""

from __future__ import annotations

from coordinator import Job


def noop(job: Job) -> None:
    """Take the job, do nothing."""
    return None
