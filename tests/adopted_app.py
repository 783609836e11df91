"""A team's existing Celery app with its own tasks, adopted by a coordinator in the tests."""

from __future__ import annotations

import os
import time
from functools import cache

import redis
from celery import Celery, shared_task

from tests.conftest import REDIS_URL

app = Celery("legacy", broker=REDIS_URL, backend=REDIS_URL, set_as_current=False)
app.conf.update(task_serializer="json", accept_content=["json"], result_serializer="json")


@cache
def _client() -> redis.Redis:
    return redis.Redis.from_url(REDIS_URL, decode_responses=True)


@app.task(name="legacy.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="legacy.explode")
def explode() -> None:
    raise ValueError("legacy failure")


@app.task(name="legacy.slow", bind=True)
def slow(self, record_key: str, seconds: float = 0.1) -> str:  # noqa: ANN001 (Celery's bound task)
    """Note each run (task id, pid) in ``record_key``, sleep, return the task id."""
    _client().rpush(record_key, f"{self.request.id}|{os.getpid()}")
    time.sleep(seconds)
    return self.request.id
