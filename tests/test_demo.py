"""The demo (`python -m coordinator.demo`) run as a user would: a subprocess, to completion or Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import redis

from coordinator import JobQueueCoordinator, JobState
from coordinator.demo import DemoSummary
from coordinator.demo.cleanup import delete_prefix_keys
from coordinator.demo.workload import (
    CLEANUP,
    CLEANUP_KEY,
    FLAKY_JOB_ID,
    METADATA,
    POISON_JOB_ID,
    THUMBNAILS,
)
from coordinator.redis_server import free_port
from tests.support.env import REDIS_URL
from tests.support.processes import wait_until_gone, worker_processes
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = 240


def demo_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "coordinator.demo", "--quick", *args]


def demo_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "REDIS_URL": REDIS_URL, "PYTHONUNBUFFERED": "1", **extra}
    env.pop("JQC_PREFIX", None)
    return env


@pytest.fixture
def cleaned(prefix: str, redis_client: redis.Redis):
    yield prefix
    delete_prefix_keys(redis_client, prefix)


def test_demo_completes_and_its_summary_matches_the_registry(cleaned: str, tmp_path: Path) -> None:
    prefix = cleaned
    out = tmp_path / "summary.json"
    proc = subprocess.run(demo_command("--keep", "--prefix", prefix, "--json-out", str(out)), cwd=ROOT,
                          env=demo_env(), capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Demo done" in proc.stdout
    summary = DemoSummary.model_validate_json(out.read_text())
    assert summary.finished and not summary.own_redis and summary.prefix == prefix

    coord = JobQueueCoordinator(REDIS_URL, prefix=prefix)
    try:
        # Every job of the summary is in the registry in the same state, and nothing else is.
        for queue in (THUMBNAILS, METADATA, CLEANUP):
            in_registry = {job.id: job for job in coord.get_jobs(queue, [s.value for s in JobState])}
            in_summary = {job.id: job for job in summary.jobs if job.queue == queue}
            assert set(in_summary) == set(in_registry), queue
            for job_id, job in in_summary.items():
                assert (job.state, job.attempts_made) == (in_registry[job_id].state, in_registry[job_id].attempts_made)
            counts = coord.get_queue_status(queue).counts
            assert next(q.counts for q in summary.queues if q.name == queue) == counts

        # The mix told its story: 4 photos (1 backfill, 3 live uploads), each a thumbnail and a
        # metadata job, plus a delayed re-thumbnail, the poison upload and the flaky geotag.
        thumbnails = [job for job in summary.jobs if job.queue == THUMBNAILS]
        assert len(thumbnails) == 4 + 1 + 1
        assert sorted(job.priority for job in thumbnails if job.name == "thumbnail") == [1, 1, 1, 5, 9]
        assert len([job for job in summary.jobs if job.queue == METADATA]) == 4 + 1
        poison = coord.get_job(THUMBNAILS, POISON_JOB_ID)
        assert poison.state is JobState.FAILED and poison.attempts_made == 1
        assert "not a readable image" in poison.failed_reason
        assert [job.id for job in coord.get_failed_jobs(THUMBNAILS)] == [POISON_JOB_ID]
        flaky = coord.get_job(METADATA, FLAKY_JOB_ID)
        assert flaky.state is JobState.COMPLETED and flaky.attempts_made == 2
        assert flaky.result["place"] == "Lisbon" and "simulated outage" in flaky.failed_reason
        for job in coord.get_jobs(THUMBNAILS, "completed"):
            sizes = [thumb["size"] for thumb in job.result["thumbnails"]]
            assert sizes == job.data.get("sizes", [128, 512])
            if job.name == "re-thumbnail":
                assert (job.processed_on - job.created_at).total_seconds() >= 2.4
        for job in coord.get_jobs(METADATA, "completed"):
            assert re.fullmatch(r"[0-9a-f]{64}", job.result["sha256"]) and job.result["camera"]

        # The recurring cleanup fired its runs as ordinary jobs linked to the schedule.
        runs = coord.get_jobs(CLEANUP, [s.value for s in JobState])
        assert len(runs) >= 2 and all(job.schedule_key == CLEANUP_KEY for job in runs)
        assert all(job.state is JobState.COMPLETED for job in runs)
        assert sum(job.result["removed"] for job in runs) == 5
        assert [entry.key for entry in summary.recurring] == [CLEANUP_KEY]
        assert summary.recurring[0].run_count >= 2
    finally:
        coord.shutdown(timeout=5)
    assert not wait_until_gone(prefix)


def test_ctrl_c_stops_workers_and_removes_keys(cleaned: str, redis_client: redis.Redis, tmp_path: Path) -> None:
    prefix = cleaned
    log = tmp_path / "demo.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(demo_command("--prefix", prefix, "--jobs", "4"), cwd=ROOT, env=demo_env(),
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: redis_client.zcard(f"{prefix}:{{{METADATA}}}:completed") > 0, 120,
                   "the demo's first metadata job completes")
        assert worker_processes(prefix), "worker processes should run while the demo runs"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 130, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    output = log.read_text()
    assert "interrupted" in output
    assert not wait_until_gone(prefix), "the demo's worker processes are gone"
    assert list(redis_client.scan_iter(match=f"*{prefix}*")) == []


def test_without_reachable_redis_it_starts_and_stops_its_own(cleaned: str, tmp_path: Path) -> None:
    prefix = cleaned
    closed = f"redis://127.0.0.1:{free_port()}/0"
    proc = subprocess.run(demo_command("--prefix", prefix), cwd=ROOT, env=demo_env(REDIS_URL=closed),
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    started = re.search(r"throwaway redis-server \(pid (\d+)\) on 127\.0\.0\.1:(\d+), no persistence, in (\S+);",
                        proc.stdout)
    assert started, proc.stdout
    pid, port, workdir = int(started[1]), int(started[2]), Path(started[3])
    assert "Demo done" in proc.stdout and f"stopped the throwaway redis-server (pid {pid})" in proc.stdout
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert not workdir.exists()
    assert not wait_until_gone(prefix)


def test_without_redis_or_redis_server_it_says_how_to_get_one(tmp_path: Path) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    proc = subprocess.run(demo_command(), cwd=ROOT, env=demo_env(REDIS_URL=closed, PATH=str(tmp_path)),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "sudo apt-get install redis-server" in proc.stderr
    assert "brew install redis" in proc.stderr
    assert closed in proc.stderr
