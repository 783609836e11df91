"""Managed worker pools: status from the heartbeat, scaling, pause/resume of one worker."""

from __future__ import annotations

from pathlib import Path

import pytest
from worker_processors import recorded

from coordinator import (
    InvalidArgumentError,
    JobQueueCoordinator,
    JobState,
    RateLimit,
    ScalingResult,
    WorkerNotFoundError,
    WorkerState,
)
from tests.processors import always_fails
from tests.support.pools import process_running, wait_until


def test_status_reports_live_figures_from_the_heartbeat(coord: JobQueueCoordinator) -> None:
    coord.create_queue("status")
    worker = coord.register_worker("status", recorded, pool="prefork", concurrency=1)
    assert worker.state is WorkerState.RUNNING and process_running(worker.pid)
    assert worker.concurrency == 1 and worker.node_name.startswith(f"{coord.settings.prefix}-")
    assert Path(worker.log_file).exists()

    long_job = coord.enqueue_job("status", {"seconds": 3})
    busy = wait_until(lambda: (s := coord.get_worker(worker.id)).active_jobs == 1 and s, 10, "an active job")
    assert busy.memory_rss_bytes and busy.memory_rss_bytes > 10_000_000
    assert busy.last_heartbeat is not None and busy.uptime_s > 0
    coord.wait_for_job("status", long_job.id, 30)

    done = [coord.enqueue_job("status", {"seconds": 0.01}) for _ in range(3)]
    for job in done:
        assert coord.wait_for_job("status", job.id, 30).state is JobState.COMPLETED
    status = wait_until(lambda: (s := coord.get_worker(worker.id)).processed == 4 and s, 10, "4 processed")
    assert status.failed == 0 and status.restarts == 0 and status.pid == worker.pid


def test_failed_jobs_are_counted_per_worker(coord: JobQueueCoordinator) -> None:
    coord.create_queue("fails")
    worker = coord.register_worker("fails", always_fails, pool="solo")
    jobs = [coord.enqueue_job("fails", None, max_retries=0) for _ in range(2)]
    for job in jobs:
        assert coord.wait_for_job("fails", job.id, 30).state is JobState.FAILED
    status = wait_until(lambda: (s := coord.get_worker(worker.id)).failed == 2 and s, 10, "2 failed")
    assert status.processed == 2


def test_scale_up_then_down_starts_and_stops_processes(coord: JobQueueCoordinator) -> None:
    coord.create_queue("scale")
    first = coord.register_worker("scale", recorded, pool="solo")

    up = coord.scale_workers("scale", 3)
    assert isinstance(up, ScalingResult)
    assert (up.previous, up.current, len(up.started), up.stopped) == (1, 3, 2, [])
    workers = {w.id: w for w in coord.get_workers_by_queue("scale")}
    assert set(workers) == {first.id, *up.started}
    for worker in workers.values():
        assert worker.state is WorkerState.RUNNING and process_running(worker.pid)
    assert len({w.pid for w in workers.values()}) == 3
    assert coord.get_queue_status("scale").workers == 3

    down = coord.scale_workers("scale", 1)
    assert (down.previous, down.current, len(down.stopped), down.started) == (3, 1, 2, [])
    left = coord.get_workers_by_queue("scale")
    assert len(left) == 1 and left[0].id not in down.stopped
    for worker_id in down.stopped:
        assert not process_running(workers[worker_id].pid)
        with pytest.raises(WorkerNotFoundError):
            coord.get_worker(worker_id)
    job = coord.enqueue_job("scale", {"seconds": 0.01})
    assert coord.wait_for_job("scale", job.id, 30).state is JobState.COMPLETED


def test_scaling_down_is_a_warm_shutdown(coord: JobQueueCoordinator) -> None:
    coord.create_queue("warm")
    coord.register_worker("warm", recorded, pool="solo")
    coord.scale_workers("warm", 2)
    jobs = [coord.enqueue_job("warm", {"seconds": 1.5}) for _ in range(2)]
    wait_until(lambda: coord._registry.counts("warm").active == 2, 15, "both jobs active")

    result = coord.scale_workers("warm", 0)
    assert (result.previous, result.current) == (2, 0)
    for job in jobs:
        final = coord.get_job("warm", job.id)
        assert final.state is JobState.COMPLETED and final.attempts_made == 1


def test_scale_needs_a_processor_and_a_sane_target(coord: JobQueueCoordinator) -> None:
    coord.create_queue("bare")
    with pytest.raises(InvalidArgumentError, match="processor"):
        coord.scale_workers("bare", 1)
    with pytest.raises(InvalidArgumentError, match="target_count"):
        coord.scale_workers("bare", -1)


def test_paused_worker_takes_no_job_while_the_other_goes_on(coord: JobQueueCoordinator) -> None:
    coord.create_queue("pause")
    paused = coord.register_worker("pause", recorded, pool="solo")
    busy = coord.register_worker("pause", recorded, pool="solo")

    coord.pause_worker(paused.id)
    assert coord.get_worker(paused.id).state is WorkerState.PAUSED
    assert coord.get_worker(busy.id).state is WorkerState.RUNNING
    jobs = [coord.enqueue_job("pause", {"seconds": 0.05}) for _ in range(8)]
    ran_on = {coord.wait_for_job("pause", job.id, 30).worker_id for job in jobs}
    assert ran_on == {busy.node_name}

    coord.resume_worker(paused.id)
    assert coord.get_worker(paused.id).state is WorkerState.RUNNING
    coord.pause_worker(busy.id)
    jobs = [coord.enqueue_job("pause", {"seconds": 0.05}) for _ in range(4)]
    ran_on = {coord.wait_for_job("pause", job.id, 30).worker_id for job in jobs}
    assert ran_on == {paused.node_name}


def test_worker_limiter_becomes_the_queues_global_limit(coord: JobQueueCoordinator) -> None:
    coord.create_queue("wlimit")
    limit = RateLimit(max=5, duration=1000)
    coord.register_worker("wlimit", recorded, pool="solo", limiter=limit)
    assert coord.get_queue("wlimit").config.limiter == limit
    with pytest.raises(InvalidArgumentError, match="limiter"):
        coord.register_worker("wlimit", recorded, pool="solo", limiter=RateLimit(max=1, duration=10))


def test_celery_autoscale_bounds_are_reported(coord: JobQueueCoordinator) -> None:
    coord.create_queue("elastic")
    worker = coord.register_worker("elastic", recorded, pool="prefork", autoscale=(3, 1))
    heartbeat = coord._redis.hgetall(coord.keys.worker(worker.node_name))
    assert (heartbeat["autoscale_max"], heartbeat["autoscale_min"]) == ("3", "1")  # the pool's own figures
    status = coord.get_worker(worker.id)
    assert status.autoscale == (3, 1)
    assert 1 <= status.concurrency <= 3
