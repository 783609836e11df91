"""Helpers of the worker-pool tests: process checks, event reads (and the bounded wait)."""

from __future__ import annotations

import os
import signal
from typing import Any

import psutil

from coordinator import JobQueueCoordinator
from tests.support.waiting import wait_until

__all__ = ["events", "kill_worker_group", "process_running", "wait_until"]

def kill_worker_group(pid: int) -> None:
    """SIGKILL a worker's whole process group (main process and pool children)."""
    os.killpg(pid, signal.SIGKILL)


def process_running(pid: int | None) -> bool:
    """True while ``pid`` is a live process (a zombie does not count)."""
    if pid is None:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def events(coord: JobQueueCoordinator, queue: str, event: str | None = None) -> list[dict[str, Any]]:
    """Every entry of the queue's event stream, optionally only one kind."""
    entries = coord._registry.client.xrange(coord._registry.queue_keys(queue).events)
    return [fields for _, fields in entries if event is None or fields.get("event") == event]
