"""A team's existing Celery app with its own tasks, adopted by a coordinator in the tests."""

from __future__ import annotations

import os
import time
from functools import cache

import redis
from celery import Celery, shared_task, signals

from tests.support.env import REDIS_URL

app = Celery("legacy", broker=REDIS_URL, backend=REDIS_URL, set_as_current=False)
app.conf.update(task_serializer="json", accept_content=["json"], result_serializer="json")


@cache
def _client() -> redis.Redis:
    return redis.Redis.from_url(REDIS_URL, decode_responses=True)


@app.task(name="legacy.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="legacy.total")
def total(values: list[int], bonus: int = 0) -> int:
    """A chord body: the header's results as a list."""
    return sum(values) + bonus


@app.task(name="legacy.explode")
def explode() -> None:
    raise ValueError("legacy failure")


@app.task(name="legacy.slow", bind=True)
def slow(self, record_key: str, seconds: float = 0.1) -> str:
    """Note each run (task id, pid) in ``record_key``, sleep, return the task id."""
    _client().rpush(record_key, f"{self.request.id}|{os.getpid()}")
    time.sleep(seconds)
    return self.request.id


@app.task(name="legacy.retry_once", bind=True, max_retries=3)
def retry_once(self, record_key: str) -> int:
    """Fails its first run with self.retry(countdown=1), then returns the retries Celery counted."""
    _client().rpush(record_key, str(self.request.retries))
    if self.request.retries == 0:
        raise self.retry(exc=RuntimeError("first run fails"), countdown=1)
    return self.request.retries


@app.task(name="legacy.auto", bind=True, autoretry_for=(KeyError,), max_retries=2, default_retry_delay=0)
def auto(self, record_key: str) -> None:
    """Always raises KeyError: retried by autoretry_for until max_retries, then failed."""
    _client().rpush(record_key, str(self.request.retries))
    raise KeyError("missing")


@app.task(name="legacy.with_job", bind=True)
def with_job(self, word: str, times: int = 1) -> dict:
    """A bound task reaching its Job: progress and a log line."""
    job = self.request.job
    job.update_progress(50)
    job.log(f"saying {word}")
    return {"said": word * times, "job": job.id, "task": self.request.id}


@shared_task(name="legacy.shared_mul")
def shared_mul(x: int, y: int) -> int:
    return x * y


#: The same team on RabbitMQ (results in Redis), adopted by a coordinator given broker_url.
amqp_app = Celery("legacy-amqp", broker=os.environ.get("JQC_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//"),
                  backend=REDIS_URL, set_as_current=False)
amqp_app.conf.update(task_serializer="json", accept_content=["json"], result_serializer="json")
amqp_app.task(name="legacy.add")(add.run)


def _note_signal(name: str):
    def receiver(sender=None, task_id=None, task=None, **kwargs) -> None:
        task_id = task_id or getattr(getattr(sender, "request", None), "id", None)
        if task_id:
            key = f"legacy-signals:{task_id}"
            _client().rpush(key, name)
            _client().expire(key, 300)
    return receiver


# Celery's signals as a team's code uses them: each one a run of a task sends is noted in Redis.
for _name in ("task_prerun", "task_success", "task_failure", "task_postrun"):
    getattr(signals, _name).connect(_note_signal(_name), weak=False)
