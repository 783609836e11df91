"""Keeps the locks of the jobs running in this process alive, from one background thread."""

from __future__ import annotations

import logging
import os
import threading

from coordinator.registry import Registry

log = logging.getLogger(__name__)


class LockKeeper:
    """Renews the lock of every running job every third of the lock's TTL.

    When the process dies the renewals stop, the locks expire, and any worker's stalled-job
    sweep sends the jobs back to waiting. Started lazily, so it lives in the pool child that
    runs jobs (a thread does not survive fork).
    """

    def __init__(self, registry: Registry, lock_ms: int) -> None:
        self._registry = registry
        self._lock_ms = lock_ms
        self._running: dict[tuple[str, str], int] = {}
        self._mutex = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def add(self, queue: str, job_id: str) -> None:
        with self._mutex:
            key = (queue, job_id)
            self._running[key] = self._running.get(key, 0) + 1
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="jqc-locks", daemon=True)
                self._thread.start()

    def remove(self, queue: str, job_id: str) -> None:
        with self._mutex:
            key = (queue, job_id)
            left = self._running.get(key, 0) - 1
            if left > 0:
                self._running[key] = left
            else:
                self._running.pop(key, None)

    def _run(self) -> None:
        interval = self._lock_ms / 3000
        event = threading.Event()
        while not event.wait(interval):
            with self._mutex:
                running = list(self._running)
            if not running:
                continue
            try:
                self._registry.renew_locks(running, self._lock_ms)
            except Exception:  # Redis away for a moment: try again next round
                log.warning("could not renew job locks", exc_info=True)
