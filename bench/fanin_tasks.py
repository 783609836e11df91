"""The fan-in benchmark's work, for both sides: coordinator processors and a Celery app whose
worker subprocess imports this module (``celery -A bench.fanin_tasks:app``; port from
``BENCH_REDIS_PORT``). A child returns the time it ended; the parent (chord callback) returns the
time it started, so the hand-off's latency is the parent's start minus the last child's end."""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery

from coordinator import Job


def child(job: Job) -> float:
    return time.time()


def parent(job: Job) -> dict[str, float]:
    started = time.time()
    return {"started": started, "last_child": max(job.children_values().values())}


def _url(db: int) -> str:
    return f"redis://127.0.0.1:{os.environ.get('BENCH_REDIS_PORT', '6379')}/{db}"


app = Celery("bench-fanin", broker=_url(5), backend=_url(6), set_as_current=False)


@app.task(name="bench.fanin.child", shared=False)
def celery_child(i: int) -> float:
    return time.time()


@app.task(name="bench.fanin.callback", shared=False)
def celery_callback(results: list[Any]) -> dict[str, float]:
    return {"started": time.time(), "last_child": max(results)}
