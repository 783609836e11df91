"""Processors for the worker-pool tests: each execution is recorded in Redis under the test's prefix."""

from __future__ import annotations

import os
import time
import uuid
from functools import cache

import redis
from celery.exceptions import SoftTimeLimitExceeded

from coordinator import Job


@cache
def _client() -> redis.Redis:
    return redis.Redis.from_url(os.environ.get("JQC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
                                decode_responses=True)


def recorded(job: Job) -> dict:
    """Note the start in data['starts'], sleep data['seconds'], then note the execution in data['record']."""
    data = job.data or {}
    execution = uuid.uuid4().hex
    if data.get("starts"):
        _client().rpush(data["starts"], f"{job.id}|{time.time()}|{os.getpid()}")
    time.sleep(float(data.get("seconds", 0.05)))
    if data.get("record"):
        _client().rpush(data["record"], f"{job.id}|{execution}")
    return {"exec": execution, "pid": os.getpid()}


def hang(job: Job) -> None:
    """Sleep far past any test's timeout (a hung job)."""
    time.sleep(float((job.data or {}).get("seconds", 600)))


def stubborn(job: Job) -> None:
    """A hung job that swallows the soft time limit, so only the hard limit can stop it."""
    deadline = time.time() + 600
    while time.time() < deadline:
        try:
            time.sleep(600)
        except SoftTimeLimitExceeded:
            continue
