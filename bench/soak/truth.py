"""Reading the registry's final word for the checker (`bench.soak.checker.Truth`), and the memory
figures: a baseline before the workload, and the figure once retention removed the finished jobs.

Redis memory is compared without the queues' event streams, which keep up to ``events_max_len``
entries by design (the soak sets it high so that every final event can be counted).
"""

from __future__ import annotations

import time
from collections import Counter

import redis

from bench.soak.checker import FINAL_STATES, JobTruth, ScheduleTruth, Truth
from coordinator import JobQueueCoordinator, JobState, Retention
from coordinator.registry.codec import to_ms

ALL_STATES = [state.value for state in JobState]


def memory_without_streams(coord: JobQueueCoordinator, admin: redis.Redis, queues: list[str]) -> int:
    """Redis ``used_memory`` less what the queues' event streams take."""
    streams = sum(int(admin.memory_usage(coord.keys.for_queue(q).events, samples=0) or 0) for q in queues)
    return int(admin.info("memory")["used_memory"]) - streams


def final_events(coord: JobQueueCoordinator, queue: str) -> Counter[str]:
    """completed / failed / cancelled events per job in the queue's stream."""
    counts: Counter[str] = Counter()
    for _, fields in coord._registry.client.xrange(coord.keys.for_queue(queue).events):
        if fields.get("event") in FINAL_STATES and fields.get("job_id"):
            counts[fields["job_id"]] += 1
    return counts


def read_truth(coord: JobQueueCoordinator, queues: list[str], known: dict[str, str]) -> Truth:
    """Every job of the queues (listed by state, plus ``known`` ids -> queue that are not listed),
    the status counts, the schedules and their runs."""
    truth = Truth()
    for queue in queues:
        truth.counts[queue] = coord.get_queue_status(queue).counts.model_dump()
        events = final_events(coord, queue)
        listed = {job.id: job for job in coord.get_jobs(queue, ALL_STATES)}
        for job_id, job_queue in known.items():
            if job_queue == queue and job_id not in listed and (job := coord.get_job(queue, job_id)) is not None:
                listed[job_id] = job
        for job in listed.values():
            truth.jobs[job.id] = JobTruth(queue, job.state.value, job.result, events[job.id],
                                          to_ms(job.finished_on) / 1000 if job.finished_on else None,
                                          job.schedule_key)
        for schedule in coord.get_recurring_jobs(queue):
            runs = sorted((job.id, to_ms(job.created_at)) for job in listed.values()
                          if job.schedule_key == schedule.key)
            truth.schedules.append(ScheduleTruth(queue, schedule.key, schedule.every or 0, schedule.run_count,
                                                 sorted(runs, key=lambda r: r[1])))
    return truth


def quiet(coord: JobQueueCoordinator, queues: list[str], timeout_s: float) -> float:
    """Wait until no job of the queues is waiting, delayed, active or waiting for children (twice
    in a row, a second apart); returns the seconds it took."""
    started = time.monotonic()
    calm = 0
    while time.monotonic() - started < timeout_s and calm < 2:
        try:
            open_jobs = sum(c.waiting + c.delayed + c.active + c.waiting_children
                            for c in (coord.get_queue_status(q).counts for q in queues))
        except redis.RedisError:
            open_jobs = 1
        calm = calm + 1 if open_jobs == 0 else 0
        time.sleep(1)
    return time.monotonic() - started


def trim_all(coord: JobQueueCoordinator, queues: list[str], timeout_s: float = 60) -> list[str]:
    """Set every queue's retention to keep no finished job and wait for the workers' trimming;
    returns the jobs still there after ``timeout_s`` (``queue/state/id``)."""
    for queue in queues:
        config = coord.get_queue(queue).config
        coord.create_queue(config.model_copy(update={"retention": Retention(completed_count=0, failed_count=0)}))
    deadline = time.monotonic() + timeout_s
    while True:
        left = [f"{queue}/{job.state.value}/{job.id}" for queue in queues for job in coord.get_jobs(queue, ALL_STATES)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)
