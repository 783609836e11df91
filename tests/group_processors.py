"""Processors for the groups and concurrency-cap tests: each run is observed in Redis (a shared
gauge of jobs running at once, the order jobs finish in), whatever worker process runs it."""

from __future__ import annotations

import os
import time
from functools import cache

import redis

from coordinator import Job

# INCR the gauge and keep the highest value it reached, in one step
_ENTER = """
local running = redis.call("INCR", KEYS[1])
if running > tonumber(redis.call("GET", KEYS[2]) or "0") then redis.call("SET", KEYS[2], running) end
return running
"""


@cache
def _client() -> redis.Redis:
    return redis.Redis.from_url(os.environ.get("JQC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
                                decode_responses=True)


def gauged(job: Job) -> str:
    """Count this run in data['gauge'] (its peak in data['gauge'] + ':peak') while it sleeps
    data['seconds'] (data['first_seconds'] on the first attempt, if given); append the job's
    group (or id) to data['order'] when it finishes."""
    data = job.data or {}
    client = _client()
    gauge = data.get("gauge")
    seconds = float(data.get("seconds", 0))
    if job.attempts_made == 1 and "first_seconds" in data:
        seconds = float(data["first_seconds"])
    if gauge:
        client.eval(_ENTER, 2, gauge, f"{gauge}:peak")
    try:
        time.sleep(seconds)
    finally:
        if gauge:
            client.decr(gauge)
    if data.get("order"):
        client.rpush(data["order"], job.options.group or job.id)
    return job.options.group or ""
