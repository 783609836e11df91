"""Module-level processors of tests/test_dedup.py (imported by the worker subprocesses)."""

from __future__ import annotations

import json
import time

from coordinator import Job


def record_run(job: Job) -> str:
    """Append ``{"id", "data", "attempt"}`` of this run to the Redis list named in the data, sleep
    ``seconds``, and fail the first ``failures`` attempts (after recording them)."""
    import redis

    client = redis.Redis.from_url(job.data["url"])
    client.rpush(job.data["key"], json.dumps({"id": job.id, "data": job.data, "attempt": job.attempts_made}))
    time.sleep(float(job.data.get("seconds", 0)))
    if job.attempts_made <= int(job.data.get("failures", 0)):
        raise RuntimeError(f"planned failure of attempt {job.attempts_made}")
    return job.id
