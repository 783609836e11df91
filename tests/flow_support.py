"""Runs a queue's waiting jobs in the test's own process, through the same claim (start.lua) and
finish (finish.lua) as a Celery worker: the kombu message is taken from the broker list and
handed to `runtime.task.execute`. For flow tests that need many ordered steps quickly; the
tests that claim worker behaviour use real `celery worker` processes."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from coordinator import Job, JobQueueCoordinator


def execute(coord: JobQueueCoordinator, handler: Callable[[Job], Any], queue: str, job_id: str, token: int,
            worker_id: str) -> None:
    """One dispatch, run as a worker runs it (`runtime.task.JobRunner.execute`)."""
    coord._runner.execute(handler, queue, job_id, token, worker_id)


def take_messages(coord: JobQueueCoordinator, queue: str) -> list[tuple[str, int]]:
    """Pop every message of the queue's broker lists: (job id, token) each, highest priority first."""
    out = []
    for key in coord._registry.queue_keys(queue).broker_lists:
        while True:
            raw = coord._redis.rpop(key)
            if raw is None:
                break
            body = json.loads(json.loads(raw)["body"])
            out.append((body[1]["job_id"], int(body[1]["token"])))
    return out


def run_queue(coord: JobQueueCoordinator, queue: str, handler: Callable[[Job], Any]) -> list[str]:
    """Run every job of ``queue`` now dispatched; returns the job ids started, in order."""
    ran = []
    for job_id, token in take_messages(coord, queue):
        before = coord._redis.hget(coord._registry.queue_keys(queue).job(job_id), "attempts")
        execute(coord, handler, queue, job_id, token, "test-worker")
        if coord._redis.hget(coord._registry.queue_keys(queue).job(job_id), "attempts") != before:
            ran.append(job_id)
    return ran


def run_all(coord: JobQueueCoordinator, handlers: dict[str, Callable[[Job], Any]], rounds: int = 20) -> list[str]:
    """Run the queues until none has a dispatched job; returns ``queue:id`` in the order started."""
    order: list[str] = []
    for _ in range(rounds):
        progressed = False
        for queue, handler in handlers.items():
            ran = run_queue(coord, queue, handler)
            order += [f"{queue}:{job_id}" for job_id in ran]
            progressed = progressed or bool(ran)
        if not progressed:
            break
    return order
