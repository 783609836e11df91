"""Managed workers whose owner is gone: they stop, unless detached."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from coordinator import JobQueueCoordinator, JobState
from tests.conftest import REDIS_URL

ROOT = Path(__file__).resolve().parent.parent


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def start_owner(prefix: str, mode: str, attachment: str, tmp_path: Path) -> tuple[subprocess.Popen[str], list[int]]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    log = open(tmp_path / "owner.log", "w")  # noqa: SIM115 (closed with the process)
    owner = subprocess.Popen([sys.executable, "-m", "tests.control_owner_script", REDIS_URL, prefix, mode, attachment],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    line = owner.stdout.readline()
    assert line, (tmp_path / "owner.log").read_text()
    tree = json.loads(line)
    assert len(tree) >= 3 and all(alive(pid) for pid in tree)  # worker, 2 pool children (and its beat)
    return owner, tree


def wait_gone(pids: list[int], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.2)
    assert [pid for pid in pids if alive(pid)] == []


def test_a_script_that_dies_on_an_exception_leaves_no_worker_running(prefix: str, tmp_path: Path) -> None:
    owner, tree = start_owner(prefix, "raise", "attached", tmp_path)
    assert owner.wait(60) == 1
    assert "the script died on an exception" in (tmp_path / "owner.log").read_text()
    wait_gone(tree)


def test_a_sigkilled_owner_leaves_no_worker_running(coord: JobQueueCoordinator, prefix: str, tmp_path: Path) -> None:
    owner, tree = start_owner(prefix, "idle", "attached", tmp_path)
    job = coord.enqueue_job("q", {"n": 1})
    assert coord.wait_for_job("q", job.id, timeout=60).state is JobState.COMPLETED  # it was consuming
    owner.send_signal(signal.SIGKILL)
    assert owner.wait(30) == -signal.SIGKILL
    wait_gone(tree)


def test_a_detached_worker_outlives_its_owner(coord: JobQueueCoordinator, prefix: str, tmp_path: Path) -> None:
    owner, tree = start_owner(prefix, "raise", "detached", tmp_path)
    try:
        assert owner.wait(60) == 1
        time.sleep(3)  # longer than the owner check and a warm shutdown of an idle worker
        assert alive(tree[0])
        job = coord.enqueue_job("q", {"n": 1})
        assert coord.wait_for_job("q", job.id, timeout=60).state is JobState.COMPLETED
    finally:
        if alive(tree[0]):
            os.killpg(tree[0], signal.SIGKILL)  # the worker this test started, and its children
    wait_gone(tree, 30)
