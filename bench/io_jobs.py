"""The I/O-bound job of `bench.asyncio_io`, for each system: wait 50 ms, then count the finish.

Celery workers import ``celery_app`` (``celery -A bench.io_jobs:celery_app``); the port comes from
``BENCH_REDIS_PORT``. Celery and arq count finished jobs with one INCR; the coordinator counts them
in its metrics hash already.
"""

from __future__ import annotations

import asyncio
import os
import time

import redis
from celery import Celery

from coordinator import Job

SLEEP_S = 0.05
PORT_ENV = "BENCH_REDIS_PORT"
#: Databases of the dedicated Redis: Celery's broker; the finish counter of Celery and arq.
CELERY_DB, COUNTER_DB = 1, 2
COUNTER = "bench:io:finished"


def url(db: int) -> str:
    return f"redis://127.0.0.1:{os.environ.get(PORT_ENV, '6379')}/{db}"


async def io_sleep_async(job: Job) -> None:
    """The coordinator's job: an ``async def`` processor."""
    await asyncio.sleep(SLEEP_S)


celery_app = Celery("bench-io", broker=url(CELERY_DB), set_as_current=False)
celery_app.conf.update(task_ignore_result=True, worker_hijack_root_logger=False)
_counter: redis.Redis | None = None


@celery_app.task(name="bench.io_sleep", shared=False)
def io_sleep_celery() -> None:
    """Celery's job: a blocking 50 ms wait (what a sync I/O call does), then count it."""
    global _counter
    time.sleep(SLEEP_S)
    if _counter is None:
        _counter = redis.Redis.from_url(url(COUNTER_DB))
    _counter.incr(COUNTER)
