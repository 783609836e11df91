"""Module-level processors the tests' worker subprocesses import."""

from __future__ import annotations

import os
import time

from coordinator import Job, UnrecoverableError


def echo(job: Job) -> dict:
    """Return the job's data; progress and a log line on the way."""
    job.update_progress(50)
    job.log(f"echo {job.name}")
    return {"echo": job.data, "name": job.name, "pid": os.getpid()}


def sleepy(job: Job) -> dict:
    """Sleep data['seconds'] (default 0.2), recording start and end times."""
    started = time.time()
    time.sleep(float((job.data or {}).get("seconds", 0.2)))
    return {"started": started, "ended": time.time(), "pid": os.getpid()}


def flaky(job: Job) -> str:
    """Fail the first data['failures'] attempts, then succeed."""
    if job.attempts_made <= int(job.data.get("failures", 1)):
        raise RuntimeError(f"flaky failure on attempt {job.attempts_made}")
    return "recovered"


def fatal(job: Job) -> None:
    if job.data.get("kind") == "unrecoverable":
        raise UnrecoverableError("cannot process this")
    raise ValueError("FATAL: corrupt input")


def always_fails(job: Job) -> None:
    raise RuntimeError("boom")


def bad_result(job: Job) -> object:
    return {1, 2, 3}


def record(job: Job) -> str:
    """Append the job id to a Redis list named in the data, so a test can count executions."""
    import redis

    client = redis.Redis.from_url(job.data["url"])
    client.rpush(job.data["key"], job.id)
    time.sleep(float(job.data.get("seconds", 0)))
    return job.id


def oversized(job: Job) -> None:
    """Write a log line over the cap (kept, truncated), then progress over the cap (refused)."""
    job.log("x" * 100_000)
    job.update_progress("y" * 100_000)


def huge_result(job: Job) -> str:
    """A result just over the 10 MiB cap."""
    return "r" * (10 * 1024 * 1024 + 1)


def chatty(job: Job) -> int:
    """Write data['lines'] log lines, numbered."""
    for n in range(int(job.data["lines"])):
        job.log(f"line {n}")
    return int(job.data["lines"])
