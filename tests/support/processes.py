"""Finding the worker processes a test started, by the key prefix in their environment."""

from __future__ import annotations

import time

import psutil


def worker_processes(prefix: str) -> list[psutil.Process]:
    """Live managed-worker processes (main and pool children) whose spec has this key prefix."""
    marker = f'"prefix":"{prefix}"'
    found = []
    for proc in psutil.process_iter():
        try:
            if marker in proc.environ().get("JQC_WORKER_SPEC", "") and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def wait_until_gone(prefix: str, timeout_s: float = 15.0) -> list[psutil.Process]:
    """The prefix's worker processes still alive after up to ``timeout_s`` (empty when all exited)."""
    deadline = time.monotonic() + timeout_s
    while (left := worker_processes(prefix)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left
