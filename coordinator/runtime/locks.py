"""Keeps the locks of the jobs running in this process alive, watches over their attempts, and
writes its job outcome counts, from one background thread."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from coordinator.errors import JobCancelledError, JobTimeoutError
from coordinator.heartbeats import HeartbeatStore
from coordinator.registry import Registry
from coordinator.runtime.control import Attempt

log = logging.getLogger(__name__)

#: An attempt still running this long after it was interrupted is reported once as unresponsive.
UNRESPONSIVE_AFTER_S = 5.0

#: How often the counts of finished jobs reach the worker's heartbeat hash (s): a job's finish
#: costs no round trip of its own for them, and a worker's status lags by at most this.
COUNT_FLUSH_S = 0.5


class LockKeeper:
    """Every ``check_ms`` (and at least every third of the lock's TTL) while jobs run, one round
    trip renews the lock of every running attempt that still owns its job. An attempt whose lock
    is gone (its job was cancelled, or recovered as stalled) is asked to stop and, after
    ``grace_ms``, interrupted; an attempt past its ``timeout`` is recorded as failed (its
    ``on_timeout``) and interrupted at once (see `runtime.control`). It also adds the jobs this
    process finished to its worker's processed / failed counts every `COUNT_FLUSH_S`.

    When the process dies the renewals stop, the locks expire, and any worker's stalled-job
    sweep sends the jobs back to waiting (counts not yet written are lost with the process: they
    are the worker's status, not the registry). Started lazily, so it lives in the pool child
    that runs jobs (a thread does not survive fork).
    """

    def __init__(self, registry: Registry, lock_ms: int, heartbeats: HeartbeatStore,
                 check_ms: int = 500, grace_ms: int = 10_000,
                 terminate: Callable[[Attempt], object] | None = None,
                 on_unresponsive: Callable[[Attempt], object] | None = None) -> None:
        self._registry = registry
        self._lock_ms = lock_ms
        self._interval_s = min(lock_ms / 3000, check_ms / 1000)
        self._grace_s = grace_ms / 1000
        self.terminate = terminate
        self.on_unresponsive = on_unresponsive
        self._running: dict[int, Attempt] = {}
        self._heartbeats = heartbeats
        self._counts: dict[str, list[int]] = {}
        self._flushed = 0.0
        """When the counts were last written (monotonic s)."""
        self._mutex = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def add(self, attempt: Attempt) -> None:
        with self._mutex:
            self._running[id(attempt)] = attempt
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                if self._pid != os.getpid():
                    self._counts.clear()  # a forked child starts its own counts
                    self._flushed = 0.0
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="jqc-locks", daemon=True)
                self._thread.start()

    def remove(self, attempt: Attempt) -> None:
        with self._mutex:
            self._running.pop(id(attempt), None)

    def count(self, worker: str, failed: bool) -> None:
        """Note one finished attempt of ``worker`` (failed or not). Written at once when the last
        write is `COUNT_FLUSH_S` old (so a slow worker's counts never lag, and the supervisor sees
        a restarted worker make progress), else by the thread within `COUNT_FLUSH_S`."""
        if self.note(worker, failed):
            self.flush_counts()

    def note(self, worker: str, failed: bool) -> bool:
        """Note one finished attempt, leaving the write to the keeper's thread (within
        `COUNT_FLUSH_S`; an event loop must not wait on it); whether a write is due."""
        with self._mutex:
            counts = self._counts.setdefault(worker, [0, 0])
            counts[0] += 1
            counts[1] += failed
            return time.monotonic() - self._flushed >= COUNT_FLUSH_S

    def _run(self) -> None:
        next_check = time.monotonic() + self._interval_s
        event = threading.Event()
        while not event.wait(min(COUNT_FLUSH_S, self._interval_s)):
            self.flush_counts()
            if time.monotonic() < next_check:
                continue
            next_check = time.monotonic() + self._interval_s
            with self._mutex:
                running = list(self._running.values())
            if not running:
                continue
            try:
                self.check(running)
            except Exception:  # Redis away for a moment: try again next round
                log.warning("could not renew job locks", exc_info=True)

    def check(self, running: list[Attempt]) -> None:
        """One round over the attempts running in this process."""
        owners = [a for a in running if a.cancel_reason is None]
        replies = self._registry.renew_locks([(a.queue, a.job_id, a.token, a.leases) for a in owners], self._lock_ms)
        for attempt, reply in zip(owners, replies):
            if reply:
                state, _, reason = reply.partition(":")
                lost = reason if state == "cancelled" and reason else f"attempt no longer owns the job ({state})"
                if attempt.request_stop(lost):
                    log.info("job %s/%s asked to stop: %s", attempt.queue, attempt.job_id, lost)
        now = time.monotonic()
        for attempt in running:
            self._watch(attempt, now)

    def _watch(self, attempt: Attempt, now: float) -> None:
        if (attempt.timeout_s is not None and not attempt.timed_out
                and now - attempt.started >= attempt.timeout_s and attempt.cancel_reason is None):
            attempt.timed_out = True
            if attempt.on_timeout is not None:
                attempt.on_timeout()  # records the failed attempt: the job is no longer its own
            attempt.request_stop(f"timeout: ran past {attempt.timeout_s:g} s")
            attempt.interrupt(JobTimeoutError, None)
        elif (attempt.cancel_reason is not None and now - attempt.cancelled_at >= self._grace_s
              and attempt.interrupt(JobCancelledError, self.terminate)):
            log.warning("job %s/%s did not stop within the grace period: interrupted",
                        attempt.queue, attempt.job_id)
        if (attempt.cancel_reason is not None and not attempt.reported and attempt.in_handler
                and now - attempt.cancelled_at >= self._grace_s + UNRESPONSIVE_AFTER_S):
            attempt.reported = True
            log.error("job %s/%s still running %.0f s after it was asked to stop (%s); its outcome "
                      "will be discarded", attempt.queue, attempt.job_id, now - attempt.cancelled_at,
                      attempt.cancel_reason)
            if self.on_unresponsive is not None:
                self.on_unresponsive(attempt)

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
