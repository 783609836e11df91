"""Processors of the control tests (cancellation, timeouts); each records what it did in Redis."""

from __future__ import annotations

import time

import redis

from coordinator import Job, JobCancelledError


def _client(job: Job) -> redis.Redis:
    return redis.Redis.from_url(job.data["url"], decode_responses=True)


def _mark(job: Job, what: str) -> None:
    _client(job).rpush(f"{job.data['key']}:{what}", f"{job.id} {time.time()}")


def loop_until_cancelled(job: Job) -> str:
    """Work in small steps, checking for a cancel between them."""
    _mark(job, "started")
    try:
        while True:
            job.raise_if_cancelled()
            time.sleep(0.02)
    except JobCancelledError:
        _mark(job, "stopped")
        raise


def ignore_cancel(job: Job) -> str:
    """Never look at the cancel flag: only the grace-period interruption stops it."""
    _mark(job, "started")
    try:
        deadline = time.monotonic() + float(job.data.get("seconds", 60))
        while time.monotonic() < deadline:
            time.sleep(0.05)
    except BaseException as exc:
        _mark(job, f"interrupted:{type(exc).__name__}")
        raise
    _mark(job, "finished")
    return "ran to the end"


def blocked_sleep(job: Job) -> str:
    """One long call into C (time.sleep) that no exception can interrupt before it returns."""
    _mark(job, "started")
    try:
        time.sleep(float(job.data.get("seconds", 3)))
    except BaseException as exc:  # the interruption waits for the C call to return
        _mark(job, f"interrupted:{type(exc).__name__}")
        raise
    _mark(job, "finished")
    return "returned late"
