"""Jobs of a worker that died: back to waiting through stalled-job recovery, completed once.

Each execution of `recorded` that reaches its end is noted in a Redis list under the test's
prefix; completions are what the registry recorded (its completed set and `completed` events).
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from collections.abc import Iterator

import psutil
import pytest
from worker_processors import recorded

from coordinator import JobQueueCoordinator, JobState, WorkerState
from coordinator.dispatch import delivery_tag
from tests.support.env import REDIS_URL
from tests.support.pools import events, kill_worker_group, wait_until
from tests.support.report import scaled

#: Jobs of the repeated-SIGKILL stream test (CI runs the default; raise it for a longer soak).
KILL_STREAM_JOBS = int(os.environ.get("JQC_KILL_STREAM_JOBS") or scaled(200, 1000))


@pytest.fixture
def tolerant(prefix: str) -> Iterator[JobQueueCoordinator]:
    """Fast sweeps, and jobs that may stall many times before they fail (they are killed often)."""
    coord = JobQueueCoordinator(REDIS_URL, prefix=prefix, stalled_interval_ms=500, lock_duration_ms=1500,
                                promote_interval_ms=50, max_stalled_count=100)
    yield coord
    coord.shutdown(timeout=10)


def completion_report(coord: JobQueueCoordinator, queue: str, job_ids: list[str], record: str) -> dict[str, int]:
    """Lost and duplicated completions, from the registry's records and the processor's notes."""
    client = coord._registry.client
    completed = set(client.zrange(coord._registry.queue_keys(queue).index("completed"), 0, -1))
    completed_events = Counter(e["job_id"] for e in events(coord, queue, "completed"))
    executions: dict[str, set[str]] = {}
    for entry in client.lrange(record, 0, -1):
        job_id, execution = entry.split("|")
        executions.setdefault(job_id, set()).add(execution)
    unbacked = 0
    for job_id in completed & set(job_ids):
        job = coord.get_job(queue, job_id)
        if job.result["exec"] not in executions.get(job_id, set()):
            unbacked += 1
    return {
        "lost": sum(1 for job_id in job_ids if job_id not in completed),
        "duplicated": sum(1 for job_id in job_ids if completed_events[job_id] > 1),
        "unbacked": unbacked,
        "executions": sum(len(runs) for runs in executions.values()),
        "stalled": len([e for e in events(coord, queue, "stalled") if "reason" not in e]),
        "unstarted": len([e for e in events(coord, queue, "stalled") if e.get("reason") == "unstarted"]),
        "failed": len(events(coord, queue, "failed")),
    }


def test_job_of_a_sigkilled_worker_completes_once(coord: JobQueueCoordinator, prefix: str, report) -> None:
    coord.create_queue("kill")
    worker = coord.register_worker("kill", recorded, pool="prefork", concurrency=1)
    record = f"{prefix}:test:executions"
    job = coord.enqueue_job("kill", {"seconds": 2, "record": record})
    wait_until(lambda: coord.get_job("kill", job.id).state is JobState.ACTIVE, 15, "the job active")
    kill_worker_group(worker.pid)
    killed = time.monotonic()

    final = coord.wait_for_job("kill", job.id, 60)
    recovered = time.monotonic() - killed
    assert final.state is JobState.COMPLETED
    assert final.attempts_made == 2
    counts = completion_report(coord, "kill", [job.id], record)
    assert counts == {"lost": 0, "duplicated": 0, "unbacked": 0, "executions": 1, "stalled": 1, "unstarted": 0,
                      "failed": 0}
    assert coord.get_worker(worker.id).restarts == 1
    report.add("worker SIGKILLed mid-job (2 s job)", 1, counts["lost"], counts["duplicated"], recovered,
               note=f"stalled interval {coord.settings.stalled_interval_ms} ms, lock {coord.settings.lock_duration_ms} ms")


def test_job_fetched_but_never_started_by_a_killed_worker_is_dispatched_again(
        coord: JobQueueCoordinator, prefix: str) -> None:
    coord.create_queue("fetched")
    worker = coord.register_worker("fetched", recorded, pool="prefork", concurrency=1)
    for child in psutil.Process(worker.pid).children():
        os.kill(child.pid, signal.SIGSTOP)  # the pool process can take the job but not start it
    job = coord.enqueue_job("fetched", {"seconds": 0.01})
    tag = delivery_tag(coord.celery_queue("fetched"), job.id, 1)
    wait_until(lambda: coord._redis.hexists(coord.keys.unacked, tag), 15, "the message fetched")
    assert coord.get_job("fetched", job.id).state is JobState.WAITING
    kill_worker_group(worker.pid)

    final = coord.wait_for_job("fetched", job.id, 60)
    assert final.state is JobState.COMPLETED and final.attempts_made == 1
    assert [e.get("reason") for e in events(coord, "fetched", "stalled")] == ["unstarted"]
    assert not coord._redis.hexists(coord.keys.unacked, tag)


def test_jobs_prefetched_by_a_sigkilled_worker_come_back_once(coord: JobQueueCoordinator, prefix: str) -> None:
    """A worker holds more messages than it runs (prefetch multiplier 4, one process): when it is
    SIGKILLed, the running job comes back as stalled and the prefetched ones as unstarted."""
    coord.create_queue("prefetch")
    worker = coord.register_worker("prefetch", recorded, pool="prefork", concurrency=1)
    assert coord.get_worker(worker.id).state is WorkerState.RUNNING
    record = f"{prefix}:test:executions"
    running = coord.enqueue_job("prefetch", {"seconds": 5, "record": record})
    wait_until(lambda: coord.get_job("prefetch", running.id).state is JobState.ACTIVE, 15, "the first job active")
    held = [coord.enqueue_job("prefetch", {"seconds": 0.01, "record": record}) for _ in range(3)]
    tags = [f"{coord.celery_queue('prefetch')}/{job.id}.1" for job in held]
    wait_until(lambda: all(coord._redis.hexists(coord.keys.unacked, tag) for tag in tags), 15,
               "the three messages prefetched")
    assert all(coord.get_job("prefetch", job.id).state is JobState.WAITING for job in held)
    kill_worker_group(worker.pid)
    wait_until(lambda: not psutil.pid_exists(worker.pid) or psutil.Process(worker.pid).status() == psutil.STATUS_ZOMBIE,
               10, "the worker killed")

    job_ids = [running.id, *(job.id for job in held)]
    for job_id in job_ids:
        assert coord.wait_for_job("prefetch", job_id, 90).state is JobState.COMPLETED
    counts = completion_report(coord, "prefetch", job_ids, record)
    assert counts == {"lost": 0, "duplicated": 0, "unbacked": 0, "executions": 4, "stalled": 1, "unstarted": 3,
                      "failed": 0}
    assert all(coord.get_job("prefetch", job.id).attempts_made == 1 for job in held)
    assert not any(coord._redis.hexists(coord.keys.unacked, tag) for tag in tags)


def test_repeated_sigkills_under_a_stream_lose_and_duplicate_nothing(tolerant: JobQueueCoordinator,
                                                                     prefix: str, report) -> None:
    coord = tolerant
    coord.create_queue("stream")
    workers = [coord.register_worker("stream", recorded, pool="prefork", concurrency=1) for _ in range(2)]
    record = f"{prefix}:test:executions"
    rng = random.Random(7)
    jobs = coord.enqueue_bulk("stream", [{"data": {"seconds": rng.uniform(0.02, 0.12), "record": record}}
                                         for _ in range(KILL_STREAM_JOBS)])
    job_ids = [job.id for job in jobs]
    completed_key = coord._registry.queue_keys("stream").index("completed")
    kills = 0
    deadline = time.monotonic() + 240
    while coord._registry.client.zcard(completed_key) < len(job_ids) and time.monotonic() < deadline:
        time.sleep(rng.uniform(0.4, 1.2))
        victim = rng.choice(workers)
        status = coord.get_worker(victim.id)
        if status.state is WorkerState.RUNNING and status.pid:
            kill_worker_group(status.pid)
            kills += 1
    wait_until(lambda: coord._registry.client.zcard(completed_key) >= len(job_ids), 60, "every job completed")

    counts = completion_report(coord, "stream", job_ids, record)
    assert kills >= 5
    assert counts["stalled"] >= 1, "no kill landed mid-job: the test proved nothing"
    assert (counts["lost"], counts["duplicated"], counts["unbacked"], counts["failed"]) == (0, 0, 0, 0)
    report.add(f"workers SIGKILLed {kills}x under a stream of {KILL_STREAM_JOBS} jobs", KILL_STREAM_JOBS,
               counts["lost"], counts["duplicated"],
               note=f"{counts['stalled']} stalled + {counts['unstarted']} unstarted recovered, "
                    f"{counts['executions']} executions")
