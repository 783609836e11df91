"""What a worker host runs in the scale-out tests: `coordinator --app tests.scaleout.host_app:make worker ...`
with REDIS_URL pointing at the Redis across its link, plus the processors those workers import."""

from __future__ import annotations

import os
import socket
import time

import redis

from coordinator import Job, JobQueueCoordinator


def make() -> JobQueueCoordinator:
    """The coordinator of REDIS_URL / JQC_PREFIX, with sweeps fast enough for a test."""
    return JobQueueCoordinator.from_env(stalled_interval_ms=1000, lock_duration_ms=2000, promote_interval_ms=50)


def slow_recorded(job: Job) -> str:
    """Sleep, then append ``<host>:<attempt>`` to the list named in the data (through this host's
    own link, waiting for it to come back), so a test sees every run that reached its end."""
    time.sleep(float(job.data.get("seconds", 0)))
    entry = f"{socket.gethostname()}:{job.attempts_made}"
    client = redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=2, socket_connect_timeout=2)
    deadline = time.monotonic() + 60
    while True:
        try:
            client.rpush(job.data["key"], entry)
            return entry
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def tiny(job: Job) -> int:
    """A job with nearly no work: the benchmark measures the coordinator's own overhead."""
    return 1
