"""Module-level ``async def`` processors the tests' worker subprocesses import."""

from __future__ import annotations

import asyncio
import os

import redis.asyncio

from coordinator import Job, UnrecoverableError


async def io_sleep(job: Job) -> dict:
    """An I/O-bound job: wait data['seconds'] (default 0.05) without holding the loop."""
    await asyncio.sleep(float((job.data or {}).get("seconds", 0.05)))
    return {"n": (job.data or {}).get("n"), "pid": os.getpid()}


async def reporting(job: Job) -> dict:
    """Progress awaited, a log line not awaited, and a result."""
    await job.update_progress(50)
    job.log(f"reporting {job.name}")
    await asyncio.sleep(0.01)
    return {"echo": job.data, "name": job.name}


async def flaky(job: Job) -> str:
    """Fail the first data['failures'] attempts, then succeed."""
    if job.attempts_made <= int(job.data.get("failures", 1)):
        raise RuntimeError(f"flaky failure on attempt {job.attempts_made}")
    return "recovered"


async def recorded(job: Job) -> str:
    """Record the run in data['key'], sleep data['seconds']; record a cancellation in key:cancelled."""
    client = redis.asyncio.Redis.from_url(job.data["url"])
    try:
        await client.rpush(job.data["key"], job.id)
        try:
            await asyncio.sleep(float(job.data.get("seconds", 0)))
        except asyncio.CancelledError:
            await asyncio.shield(client.rpush(job.data["key"] + ":cancelled", job.id))
            raise
        return job.id
    finally:
        await client.aclose()


async def part(job: Job) -> int:
    """A flow child: wait a little, return its number."""
    await asyncio.sleep(0.01)
    return int(job.data["i"])


async def echo(job: Job) -> dict:
    """Return the job's name and data."""
    await asyncio.sleep(0)
    return {"name": job.name, "data": job.data}


async def fatal(job: Job) -> None:
    """Fail for good (no retry)."""
    await asyncio.sleep(0)
    raise UnrecoverableError("cannot process this")
