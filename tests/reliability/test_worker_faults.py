"""Workers stopped mid-job by signals, and deliveries that Celery alone would run twice."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from tests import processors
from tests.support.faults import coordinator_on, lost_and_duplicated
from tests.support.pools import events
from tests.support.report import scaled
from tests.support.servers import RedisServer
from tests.support.waiting import WAIT_S, wait_until


def _running(coord, queue: str) -> list[str]:
    return [j.id for j in coord.get_jobs(queue, ["active"])]


def test_warm_then_cold_shutdown_mid_job_loses_nothing(report) -> None:
    count = 6
    with RedisServer() as server, coordinator_on(server) as coord:
        coord.create_queue("q")
        first = coord.register_worker("q", processors.sleepy, pool="prefork", concurrency=2)
        ids = [coord.enqueue_job("q", {"seconds": 1.5}, job_id=f"warm-{n}").id for n in range(count)]
        wait_until(lambda: len(_running(coord, "q")) == 2)
        os.kill(first.pid, signal.SIGTERM)  # warm: the two running jobs finish, the rest wait
        wait_until(lambda: _exited(first.pid), timeout=WAIT_S)
        assert coord.get_queue_status("q").counts.completed >= 2

        second = coord.register_worker("q", processors.sleepy, pool="prefork", concurrency=2)
        wait_until(lambda: len(_running(coord, "q")) == 2)
        started = time.monotonic()
        os.kill(second.pid, signal.SIGTERM)
        time.sleep(0.2)
        os.kill(second.pid, signal.SIGQUIT)  # cold: the running jobs are cut off
        wait_until(lambda: _exited(second.pid), timeout=WAIT_S)
        third = coord.register_worker("q", processors.sleepy, pool="prefork", concurrency=2)
        wait_until(lambda: coord.get_queue_status("q").counts.completed == count, timeout=60)
        recovered = time.monotonic() - started
        lost, duplicated = lost_and_duplicated(coord, "q", ids)
        assert (lost, duplicated) == (0, 0)
        stalled = len(events(coord, "q", "stalled"))
        assert stalled >= 1  # the fault happened: the cold shutdown cut running jobs off
        coord.close_worker(third.id)
    report.add("SIGTERM (warm) then SIGTERM+SIGQUIT (cold) mid-job", count, lost, duplicated, recovered,
               note=f"{stalled} cut-off jobs returned by the stalled-job sweep")


def test_delays_and_runs_longer_than_the_visibility_timeout_run_once(report) -> None:
    with RedisServer() as server, coordinator_on(server, visibility_timeout_s=1) as coord:
        coord.create_queue("q")
        for _ in range(2):
            coord.register_worker("q", processors.sleepy, pool="threads", concurrency=2)
        delayed = [coord.schedule_job("q", "later", {"seconds": 0.1}, delay=3000).id for _ in range(4)]
        long = [coord.enqueue_job("q", {"seconds": 4}).id for _ in range(2)]
        wait_until(lambda: coord.get_queue_status("q").counts.completed == 6, timeout=60)
        time.sleep(2)  # room for a late re-delivery to (wrongly) complete something twice
        lost, duplicated = lost_and_duplicated(coord, "q", delayed + long)
        assert (lost, duplicated) == (0, 0)
        attempts = [coord.get_job("q", j).attempts_made for j in delayed + long]
        assert attempts == [1] * len(attempts)
        runs = len(events(coord, "q", "active"))
    report.add("3 s delays and 4 s jobs, visibility timeout 1 s, 2 workers", len(delayed + long), lost, duplicated,
               note=f"{runs} runs started for {len(attempts)} jobs (attempts per job: {max(attempts)})")


@pytest.mark.timeout(1800)  # 100,000 jobs with JQC_RELIABILITY_FULL=1
def test_a_long_stream_loses_nothing_and_memory_stays_bounded(report) -> None:
    count = scaled(3_000, 100_000)
    with RedisServer() as server, coordinator_on(server, events_max_len=1000) as coord:
        coord.create_queue("q", retention={"completed_count": 100})
        for start in range(0, count, 5000):
            coord.enqueue_bulk("q", [{"data": {"n": n}} for n in range(start, min(start + 5000, count))])
        admin = server.client()
        peak = admin.info("memory")["used_memory"]
        for _ in range(2):
            coord.register_worker("q", processors.echo, pool="threads", concurrency=4)
        started = time.monotonic()
        wait_until(lambda: _finished(coord) == count, timeout=900)
        elapsed = time.monotonic() - started
        status = coord.get_queue_status("q").counts
        assert status.failed == 0 and status.waiting == 0 and status.active == 0
        wait_until(lambda: coord.get_queue_status("q").counts.completed <= 100 + 50)
        after = admin.info("memory")["used_memory"]
        assert after < peak  # finished jobs were trimmed, not kept
        processed = int(admin.hget(coord.keys.for_queue("q").metrics, "all:c") or 0)
        assert processed == count
    report.add(f"{count} jobs through bulk enqueue and 2 workers", count, count - processed, 0,
               note=f"{count / elapsed:.0f} jobs/s; Redis memory {peak >> 20} MiB full -> {after >> 20} MiB after")


def _exited(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _finished(coord) -> int:
    """Jobs finished since the queue was created (the metrics' running totals)."""
    done, failed = coord._redis.hmget(coord.keys.for_queue("q").metrics, "all:c", "all:f")
    return int(done or 0) + int(failed or 0)


def test_a_worker_restarted_while_redis_is_away_is_supervised_again(report) -> None:
    """Found by the soak (bench/soak): a restart whose wait for the new process's heartbeat met
    a Redis restart raised, the worker stayed `starting` for ever, and its next death was never
    noticed (the soak's managed workers all ended up dead, unrestarted)."""
    with RedisServer("--appendonly", "yes") as server, coordinator_on(server) as coord:
        coord.create_queue("q")
        worker = coord.register_worker("q", processors.echo, pool="solo")
        os.killpg(worker.pid, signal.SIGKILL)
        wait_until(lambda: coord.get_worker(worker.id).state.value == "starting", timeout=WAIT_S)
        server.stop()  # the supervisor is waiting for the new process's first heartbeat
        time.sleep(2)
        server.start()
        started = time.monotonic()
        wait_until(lambda: coord.get_worker(worker.id).state.value == "running", timeout=60)
        recovered = time.monotonic() - started
        restarted = coord.get_worker(worker.id)
        os.killpg(restarted.pid, signal.SIGKILL)  # supervised again: this death is noticed too
        wait_until(lambda: coord.get_worker(worker.id).pid not in (None, restarted.pid)
                   and coord.get_worker(worker.id).state.value == "running", timeout=60)
        job = coord.enqueue_job("q", 1)
        assert coord.wait_for_job("q", job.id, timeout=WAIT_S).state.value == "completed"
        lost, duplicated = lost_and_duplicated(coord, "q", [job.id])
        restarts = coord.get_worker(worker.id).restarts
    report.add("worker restarted while Redis restarts, then SIGKILLed again", 1, lost, duplicated, recovered,
               note=f"{restarts} restarts; supervised after the one that met the outage")
