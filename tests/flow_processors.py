"""Module-level processors of the flow tests' worker subprocesses."""

from __future__ import annotations

import time

import redis

from coordinator import Job


def part(job: Job) -> int:
    """A child: wait a little, return its number."""
    time.sleep(float(job.data.get("seconds", 0)))
    return int(job.data["i"])


def total(job: Job) -> dict:
    """A parent: record that it ran (a Redis list named in its data), then sum its children."""
    redis.Redis.from_url(job.data["url"]).rpush(job.data["key"], job.id)
    values = job.children_values()
    return {"count": len(values), "sum": sum(values.values())}
