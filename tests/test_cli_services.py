"""The CLI's long-running and service commands for real: `worker` with `--no-beat` and
`--autoscale`, the per-container probes (`health --worker`, `health --beat`), `events --follow`,
`cancel --terminate`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from coordinator import JobQueueCoordinator, JobState
from coordinator.cli import live_workers
from tests import processors
from tests.support.env import REDIS_URL
from tests.support.waiting import WAIT_S, wait_until


@pytest.fixture
def env(prefix: str) -> dict[str, str]:
    return {**os.environ, "REDIS_URL": REDIS_URL, "JQC_PREFIX": prefix, "JQC_APP": ""}


def cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coordinator.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture
def cli_worker(env: dict[str, str]) -> Iterator:
    """Start `coordinator worker ...` subprocesses; each is stopped (SIGTERM) after the test."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-m", "coordinator.cli", "worker", *args], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        stop(proc)


def stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM (warm shutdown) and the process's stderr."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
    return stderr or ""


def test_worker_probe_checks_this_hosts_worker_and_beat_probe_the_lock(coord: JobQueueCoordinator, env,
                                                                       cli_worker) -> None:
    coord.create_queue("pq")
    coord.create_queue("other")
    nobody = cli(env, "health", "--worker")
    assert nobody.returncode == 1 and "no worker with a fresh heartbeat on" in nobody.stdout
    assert cli(env, "health", "--beat").returncode == 1

    worker = cli_worker("--queue", "pq", "--processor", "tests.processors:echo", "--pool", "solo")
    job = coord.enqueue_job("pq", {"n": 1})
    assert coord.wait_for_job("pq", job.id, timeout=WAIT_S).state is JobState.COMPLETED
    mine = cli(env, "health", "--worker", "--queue", "pq")
    assert mine.returncode == 0 and mine.stdout.startswith("healthy  worker"), mine.stdout
    assert cli(env, "health", "--worker", "--queue", "other").returncode == 1  # only its own queue
    # The worker embeds a beat by default: it takes the lock, and the beat probe sees it.
    wait_until(lambda: cli(env, "health", "--beat").returncode == 0, WAIT_S, "the embedded beat holds the lock")
    stop(worker)
    assert worker.returncode == 0
    # The stack-wide check is unhealthy now (a waiting job, no worker); each probe speaks for its own service.
    coord.enqueue_job("other", {"n": 2})
    assert cli(env, "health").returncode == 1


def test_no_beat_worker_runs_jobs_but_no_beat_and_autoscale_is_passed_on(coord: JobQueueCoordinator, env,
                                                                         cli_worker) -> None:
    coord.create_queue("nb")
    coord.schedule_recurring_job("nb", "tick", {}, every=500, key="tick")
    worker = cli_worker("--queue", "nb", "--processor", "tests.processors:echo", "--no-beat", "--autoscale", "2,1")
    job = coord.enqueue_job("nb", {"n": 1})
    assert coord.wait_for_job("nb", job.id, timeout=WAIT_S).state is JobState.COMPLETED
    [node] = [w["node"] for w in live_workers(coord)]
    heartbeat = coord._redis.hgetall(coord.keys.worker(node))
    assert (heartbeat["autoscale_max"], heartbeat["autoscale_min"]) == ("2", "1")  # the pool's own figures
    # Consuming and running jobs for a while, yet no beat: the lock is free, the schedule never fired.
    assert coord.beat_lock_ttl_ms() == 0
    assert [j for j in coord.get_jobs("nb", ["waiting", "active", "completed"]) if j.schedule_key] == []
    stderr = stop(worker)
    assert worker.returncode == 0, stderr
    assert "Acquired lock" not in stderr


@pytest.mark.parametrize(("args", "named"), [
    (["--autoscale", "two,1"], "--autoscale"),
    (["--autoscale", "1,3"], "autoscale"),
    (["--concurrency", "0"], "--concurrency"),
    (["--pool", "gevent"], "--pool"),
])
def test_invalid_worker_options_exit_2_naming_the_option(coord: JobQueueCoordinator, env, args, named) -> None:
    coord.create_queue("bad")
    result = cli(env, "worker", "--queue", "bad", "--processor", "tests.processors:echo", *args)
    assert result.returncode == 2, result.stderr
    assert named in result.stderr
    assert live_workers(coord) == []


def test_events_follow_prints_new_events_as_they_happen(coord: JobQueueCoordinator, env) -> None:
    coord.create_queue("fq")
    proc = subprocess.Popen([sys.executable, "-m", "coordinator.cli", "events", "fq", "--follow", "--json"],
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    lines: list[dict] = []
    reader = threading.Thread(target=lambda: lines.extend(json.loads(line) for line in proc.stdout), daemon=True)
    reader.start()
    try:
        first = coord.enqueue_job("fq", 1)
        wait_until(lambda: [e for e in lines if e["job_id"] == first.id], 120, "the follower's first line (its start)")
        second = coord.enqueue_job("fq", 2)  # after the follower printed: only a follower sees it
        coord.cancel_job("fq", second.id)
        wait_until(lambda: len(lines) >= 3, 60, "events enqueued while following")
        assert proc.poll() is None  # still following
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    assert [(e["event"], e["job_id"]) for e in lines] == [
        ("waiting", first.id), ("waiting", second.id), ("cancelled", second.id)]
    assert proc.returncode == 0


def test_cancel_terminate_stops_an_active_job(coord: JobQueueCoordinator, env) -> None:
    coord.create_queue("cq")
    coord.register_worker("cq", processors.sleepy, pool="prefork", concurrency=1)
    job = coord.enqueue_job("cq", {"seconds": 60}, max_retries=0)
    wait_until(lambda: coord.get_job("cq", job.id).state is JobState.ACTIVE, WAIT_S, "the job runs")

    done = cli(env, "cancel", "cq", job.id, "--terminate")
    assert done.returncode == 0 and f"job {job.id} cancelled" in done.stdout
    assert coord.get_job("cq", job.id).state is JobState.CANCELLED
    # The running attempt was stopped, not left to finish its 60 s: the one pool process is free
    # for the next job well before that.
    after = coord.enqueue_job("cq", {"seconds": 0})
    assert coord.wait_for_job("cq", after.id, timeout=WAIT_S).state is JobState.COMPLETED
    assert coord.get_job("cq", job.id).state is JobState.CANCELLED
