"""The arq side of `bench.asyncio_io`: its worker settings and an enqueue command.

Runs in its own environment (arq pins redis-py below 6, which Celery's Redis transport refuses):
``python -m venv .venv-arq && .venv-arq/bin/pip install arq``. Jobs are JSON (never pickle).

    .venv-arq/bin/python -m arq bench.arq_side.WorkerSettings     # the worker (max_jobs from ARQ_MAX_JOBS)
    .venv-arq/bin/python -m bench.arq_side enqueue N               # N jobs, then exit
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings

SLEEP_S = 0.05
DB = 3
QUEUE = "bench:arq:queue"
COUNTER = "bench:io:finished"


def settings() -> RedisSettings:
    return RedisSettings(host="127.0.0.1", port=int(os.environ.get("BENCH_REDIS_PORT", "6379")), database=DB)


async def io_sleep(ctx: dict[str, Any]) -> None:
    """arq's job: wait 50 ms without holding the loop, then count it."""
    await asyncio.sleep(SLEEP_S)
    await ctx["redis"].incr(COUNTER)


class WorkerSettings:
    functions = [io_sleep]
    redis_settings = settings()
    queue_name = QUEUE
    max_jobs = int(os.environ.get("ARQ_MAX_JOBS", "100"))
    keep_result = 0
    job_serializer = staticmethod(lambda value: json.dumps(value).encode())
    job_deserializer = staticmethod(json.loads)


async def enqueue(count: int) -> None:
    pool = await create_pool(settings(), job_serializer=WorkerSettings.job_serializer,
                             job_deserializer=WorkerSettings.job_deserializer, default_queue_name=QUEUE)
    for start in range(0, count, 500):
        await asyncio.gather(*(pool.enqueue_job("io_sleep") for _ in range(start, min(count, start + 500))))
    await pool.aclose()


if __name__ == "__main__" and sys.argv[1:2] == ["enqueue"]:
    asyncio.run(enqueue(int(sys.argv[2])))
