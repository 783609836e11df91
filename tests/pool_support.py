"""Helpers of the worker-pool tests: bounded waits, process checks, event reads."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psutil

from coordinator import JobQueueCoordinator

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float = 30.0, what: str = "condition",
               interval: float = 0.05) -> T:
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


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
