"""Starting and stopping one `celery worker` subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from coordinator.workers.spec import SPEC_ENV, WorkerSpec


def spawn(spec: WorkerSpec, log_path: Path) -> subprocess.Popen[bytes]:
    """Start the worker with the caller's environment and import path, its output in a log file;
    unless detached, it stops when this process is gone (`runtime.owner_watch`)."""
    if not spec.options.detached:
        spec = spec.model_copy(update={"owner_pid": os.getpid()})
    env = dict(os.environ)
    env[SPEC_ENV] = spec.model_dump_json()
    paths = [p or os.getcwd() for p in sys.path]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "coordinator.runtime.worker_main"],
            env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes], timeout: float) -> int | None:
    """Warm shutdown (SIGTERM: running jobs finish), then SIGKILL after ``timeout`` s; reaps it."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_group(process)
            process.wait(10)
    return process.returncode


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the worker and its pool children."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def log_tail(log_path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
