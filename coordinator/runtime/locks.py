"""Keeps the locks of the jobs running in this process alive, and writes its job outcome counts,
from one background thread."""

from __future__ import annotations

import logging
import os
import threading
import time

from coordinator.heartbeats import HeartbeatStore
from coordinator.registry import Registry

log = logging.getLogger(__name__)

#: How often the counts of finished jobs reach the worker's heartbeat hash (s): a job's finish
#: costs no round trip of its own for them, and a worker's status lags by at most this.
COUNT_FLUSH_S = 0.5


class LockKeeper:
    """Renews the lock of every running job every third of the lock's TTL, and adds the jobs this
    process finished to its worker's processed / failed counts every `COUNT_FLUSH_S`.

    When the process dies the renewals stop, the locks expire, and any worker's stalled-job
    sweep sends the jobs back to waiting (counts not yet written are lost with the process: they
    are the worker's status, not the registry). Started lazily, so it lives in the pool child
    that runs jobs (a thread does not survive fork).
    """

    def __init__(self, registry: Registry, lock_ms: int, heartbeats: HeartbeatStore) -> None:
        self._registry = registry
        self._lock_ms = lock_ms
        self._heartbeats = heartbeats
        self._running: dict[tuple[str, str], int] = {}
        self._counts: dict[str, list[int]] = {}
        self._flushed = 0.0
        """When the counts were last written (monotonic s)."""
        self._mutex = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def add(self, queue: str, job_id: str) -> None:
        with self._mutex:
            key = (queue, job_id)
            self._running[key] = self._running.get(key, 0) + 1
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                if self._pid != os.getpid():
                    self._counts.clear()  # a forked child starts its own counts
                    self._flushed = 0.0
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

    def count(self, worker: str, failed: bool) -> None:
        """Note one finished attempt of ``worker`` (failed or not). Written at once when the last
        write is `COUNT_FLUSH_S` old (so a slow worker's counts never lag, and the supervisor sees
        a restarted worker make progress), else by the thread within `COUNT_FLUSH_S`."""
        with self._mutex:
            counts = self._counts.setdefault(worker, [0, 0])
            counts[0] += 1
            counts[1] += failed
            due = time.monotonic() - self._flushed >= COUNT_FLUSH_S
        if due:
            self.flush_counts()

    def _run(self) -> None:
        renew_every = self._lock_ms / 3000
        next_renewal = time.monotonic() + renew_every
        event = threading.Event()
        while not event.wait(min(COUNT_FLUSH_S, renew_every)):
            self.flush_counts()
            if time.monotonic() < next_renewal:
                continue
            next_renewal = time.monotonic() + renew_every
            with self._mutex:
                running = list(self._running)
            if not running:
                continue
            try:
                self._registry.renew_locks(running, self._lock_ms)
            except Exception:  # Redis away for a moment: try again next round
                log.warning("could not renew job locks", exc_info=True)

    def flush_counts(self) -> None:
        """Write the counts noted so far; kept for the next round if Redis is away."""
        with self._mutex:
            counts, self._counts = self._counts, {}
            self._flushed = time.monotonic()
        for worker, (processed, failed) in counts.items():
            try:
                self._heartbeats.count_outcome(worker, processed, failed)
            except Exception:  # a count is not worth failing anything for; retried next round
                log.warning("could not count job outcomes for %s", worker, exc_info=True)
                self.count_back(worker, processed, failed)

    def count_back(self, worker: str, processed: int, failed: int) -> None:
        with self._mutex:
            counts = self._counts.setdefault(worker, [0, 0])
            counts[0] += processed
            counts[1] += failed
