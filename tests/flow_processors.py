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


def spawner(job: Job) -> int:
    """A batch member: adds ``spawn`` more members to its own batch while it runs."""
    batch = job.batch
    for i in range(int(job.data.get("spawn", 0))):
        assert batch is not None
        batch.enqueue_job(job.queue, {"url": job.data["url"], "key": job.data["key"], "i": i})
    time.sleep(0.01)
    return int(job.data.get("i", -1))


def callback(job: Job) -> dict:
    """A batch callback: record that it ran, with what it saw."""
    redis.Redis.from_url(job.data["url"]).rpush(job.data["key"], job.data["kind"])
    return job.children_values()
