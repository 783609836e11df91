"""What the soak's workers run: the processor of the soak queues and the tasks of a small Celery
app the soak's coordinator adopts. Each run appends a ``start`` line to the history before it
works and an ``end`` line after (with how it ended), so a run cut off by a fault has a start and
no end. Imported by the worker processes; the history file and the Redis URL come from the
environment the driver set before it started them.
"""

from __future__ import annotations

import os
import time
import uuid
from functools import cache
from typing import Any

from celery import Celery

from bench.soak.history import HISTORY_ENV, History
from coordinator import Job, JobCancelledError, JobQueueCoordinator, UnrecoverableError
from coordinator.registry.codec import to_ms

#: The environment variable with the soak's own Redis (the adopted app's broker and backend).
REDIS_ENV = "JQC_SOAK_REDIS_URL"

app = Celery("soak", broker=os.environ.get(REDIS_ENV, "redis://127.0.0.1:6379/0"),
             backend=os.environ.get(REDIS_ENV, "redis://127.0.0.1:6379/0"), set_as_current=False)
app.conf.update(task_serializer="json", accept_content=["json"], result_serializer="json",
                task_ignore_result=True)


#: The coordinator settings of every soak process (driver, managed workers, worker hosts): sweeps
#: fast enough that a killed worker's jobs come back within seconds, and jobs that may stall as
#: often as the faults make them (by default a job fails after one stall, as promised).
SETTINGS: dict[str, Any] = dict(lock_duration_ms=3000, stalled_interval_ms=1000, promote_interval_ms=100,
                                max_stalled_count=1000, events_max_len=1_000_000, socket_timeout_s=2,
                                cancel_grace_ms=2000)


def host_coordinator() -> JobQueueCoordinator:
    """The coordinator of a worker host (`coordinator --app bench.soak.tasks:host_coordinator
    worker ...` in a network namespace) and of the soak's beat; REDIS_URL and JQC_PREFIX from the
    environment, the settings from `SETTINGS`."""
    return JobQueueCoordinator.from_env(**SETTINGS)


class RetryMe(Exception):
    """A failed attempt that is retried (data ``fail_times``)."""


@cache
def _history() -> History:
    return History(os.environ[HISTORY_ENV])


def _started(job: Job) -> str:
    execution = uuid.uuid4().hex
    data = job.data if isinstance(job.data, dict) else {}
    claimed = to_ms(job.processed_on) / 1000 if job.processed_on else time.time()
    _history().write("start", x=execution, job=job.id, q=job.queue, tok=job._token, att=job.attempts_made,
                     claimed=claimed, pid=os.getpid(), limits=data.get("hold") or [])
    return execution


def _ended(job: Job, execution: str, out: str) -> None:
    _history().write("end", x=execution, job=job.id, q=job.queue, tok=job._token, out=out)


def _work(job: Job, data: dict[str, Any]) -> None:
    """Sleep ``ms`` in small steps, stopping when the job is cancelled; fail as ``do`` says."""
    deadline = time.monotonic() + float(data.get("ms", 20)) / 1000
    while (left := deadline - time.monotonic()) > 0:
        job.raise_if_cancelled()
        time.sleep(min(left, 0.05))
    if data.get("do") == "fatal":
        raise UnrecoverableError("soak: an unrecoverable failure")
    if data.get("do") == "retry" and job.attempts_made <= int(data.get("fail_times", 1)):
        raise RetryMe(f"soak: attempt {job.attempts_made} fails")


def run(job: Job) -> dict[str, Any]:
    """The processor of every soak queue: record the run, work, record how it ended."""
    data = job.data if isinstance(job.data, dict) else {}
    execution = _started(job)
    try:
        _work(job, data)
        if data.get("do") == "parent":
            data = {**data, "children": len(job.children_values())}
    except JobCancelledError:
        _ended(job, execution, "cancelled")
        raise
    except UnrecoverableError:
        _ended(job, execution, "fatal")
        raise
    except Exception:
        _ended(job, execution, "error")
        raise
    _ended(job, execution, "ok")
    return {"x": execution}


@app.task(name="soak.adopted", bind=True)
def adopted(self: Any, ms: int = 20, fail: bool = False) -> dict[str, Any]:
    """An adopted Celery task: sleeps ``ms``; with ``fail`` raises (an adopted ``.delay`` is not
    retried: it fails at once, as in Celery)."""
    job = self.request.job
    execution = _started(job)
    time.sleep(ms / 1000)
    if fail:
        _ended(job, execution, "fatal")
        raise ValueError("soak: adopted task fails")
    _ended(job, execution, "ok")
    return {"x": execution}
