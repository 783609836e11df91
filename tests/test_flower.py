"""`coordinator flower`: Flower on the coordinator's app lists a completed coordinator job."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinator import JobQueueCoordinator
from tests import processors
from tests.support.env import REDIS_URL
from tests.support.servers import free_port, stop_process
from tests.support.waiting import wait_until

AUTH = "ops:flower-pw"


def get(url: str, auth: str | None = AUTH) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


@pytest.fixture
def flower_url(prefix: str, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "REDIS_URL": REDIS_URL, "JQC_PREFIX": prefix, "FLOWER_BASIC_AUTH": AUTH}
    log = open(tmp_path / "flower.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "coordinator.cli", "flower", "--port", str(port)],
                            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if get(f"{url}/api/workers")[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("Flower did not start:\n" + (tmp_path / "flower.log").read_text())
            time.sleep(0.1)
        yield url
    finally:
        stop_process(proc)
        log.close()
    assert "flower-pw" not in (tmp_path / "flower.log").read_text()


def test_flower_lists_a_completed_coordinator_job(coord: JobQueueCoordinator, flower_url: str) -> None:
    assert get(f"{flower_url}/api/tasks", auth=None)[0] == 401
    assert get(f"{flower_url}/api/tasks", auth="ops:wrong")[0] == 401
    coord.create_queue("fl")
    worker = coord.register_worker("fl", processors.echo, pool="solo", concurrency=1)
    tasks: dict = {}
    seen: list[str] = []

    def listed() -> bool:
        """Managed workers send task events once Flower turns them on (its enable_events
        broadcast, every 5 s), so a job run before that is not listed: run one job per try."""
        nonlocal tasks
        job = coord.enqueue_job("fl", {"x": 1})
        coord.wait_for_job("fl", job.id, timeout=30)
        time.sleep(0.5)
        status, body = get(f"{flower_url}/api/tasks")
        tasks = json.loads(body) if status == 200 else {}
        seen[:] = [task_id for task_id, task in tasks.items() if task.get("state") == "SUCCESS"]
        return bool(seen)

    wait_until(listed, timeout=60, what="a coordinator job SUCCESS in Flower")
    task_id = seen[-1]
    task = tasks[task_id]
    assert task["name"] == "echo"  # listed under the job's name (Celery's shadow)
    assert task["args"] == '{"x":1}' and "'echo': {'x': 1}" in task["result"]
    assert task["worker"] == worker.node_name

    coord.create_queue("fl-fatal")
    coord.register_worker("fl-fatal", processors.fatal, pool="solo", concurrency=1)
    found: dict = {}
    failed_id = ""

    def failed_listed() -> bool:
        """One failing job per try, as above: the new worker sends events once Flower enabled them."""
        nonlocal found, failed_id
        bad = coord.enqueue_job("fl-fatal", {"kind": "unrecoverable"})
        coord.wait_for_job("fl-fatal", bad.id, timeout=30)
        time.sleep(0.5)
        status, body = get(f"{flower_url}/api/tasks?search={bad.id}")
        found = json.loads(body) if status == 200 else {}
        failed_id = f"{bad.id}.1"
        return found.get(failed_id, {}).get("state") == "FAILURE"

    wait_until(failed_listed, timeout=60, what="a failed job FAILURE in Flower, found by its job id")
    assert "cannot process this" in found[failed_id]["exception"]

    def worker_listed() -> bool:  # Flower asks the workers over the control exchange (1 s timeout)
        status, body = get(f"{flower_url}/api/workers?refresh=1")
        return status == 200 and worker.node_name in json.loads(body)

    wait_until(worker_listed, timeout=30, what="worker in /api/workers")


def test_flower_binds_to_loopback_by_default() -> None:
    from coordinator.flower import flower_argv

    argv = flower_argv()
    assert "--address=127.0.0.1" in argv
    assert not any("auth" in arg for arg in argv)  # credentials travel in the environment only
