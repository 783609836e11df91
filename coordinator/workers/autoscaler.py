"""Autoscaler: applies each queue's `AutoscalePolicy` from a thread in the managing process.

The wanted size is ceil((waiting + active) / jobs_per_worker) bounded by the policy's min and
max, read from the registry's counts (one round trip); a change goes through
`WorkerManager.scale_workers`, so scaling down is a warm shutdown. After a change the queue is
left alone for ``cooldown_s``. The policy lives in this process: workers it started are
managed (and supervised) here like any other.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import TYPE_CHECKING

from coordinator.models import AutoscalePolicy, QueueCounts
from coordinator.workers.loop import BackgroundLoop

if TYPE_CHECKING:
    from coordinator.workers.manager import WorkerManager

log = logging.getLogger(__name__)

#: How often the thread wakes to see which policies are due.
TICK_S = 0.2


def wanted_workers(policy: AutoscalePolicy, counts: QueueCounts) -> int:
    """Workers the policy wants for a queue with these counts."""
    wanted = math.ceil((counts.waiting + counts.active) / policy.jobs_per_worker)
    return max(policy.min_workers, min(policy.max_workers, wanted))


class Autoscaler:
    """Queue-depth policies by queue, and the one thread that applies them."""

    def __init__(self, manager: WorkerManager) -> None:
        self.manager = manager
        self._policies: dict[str, AutoscalePolicy] = {}
        self._next_check: dict[str, float] = {}
        self._quiet_until: dict[str, float] = {}
        self._mutex = threading.Lock()
        self.loop = BackgroundLoop("jqc-autoscaler", TICK_S, self.apply_due)

    def set_policy(self, queue: str, policy: AutoscalePolicy | None) -> None:
        with self._mutex:
            if policy is None:
                self._policies.pop(queue, None)
                return
            self._policies[queue] = policy
            self._next_check[queue] = 0.0
        self.loop.start()

    def get_policy(self, queue: str) -> AutoscalePolicy | None:
        with self._mutex:
            return self._policies.get(queue)

    def stop(self) -> None:
        """Stop applying policies; waits for a scaling step in progress."""
        self.loop.stop(timeout=60)

    def apply_due(self) -> None:
        """Apply each policy whose interval has passed."""
        with self._mutex:
            due = [(queue, policy) for queue, policy in self._policies.items()
                   if time.monotonic() >= self._next_check.get(queue, 0.0)]
        for queue, policy in due:
            if self.loop.stopping.is_set():
                return
            self._next_check[queue] = time.monotonic() + policy.interval_s
            try:
                self.apply(queue, policy)
            except Exception:  # a failed step is tried again at the next check
                log.warning("autoscaling queue %s failed", queue, exc_info=True)

    def apply(self, queue: str, policy: AutoscalePolicy) -> int | None:
        """One step for one queue: scale to the wanted size unless cooling down; the new size."""
        if time.monotonic() < self._quiet_until.get(queue, 0.0):
            return None
        wanted = wanted_workers(policy, self.manager.registry.counts(queue))
        if wanted == len(self.manager.members(queue)):
            return None
        result = self.manager.scale_workers(queue, wanted)
        self._quiet_until[queue] = time.monotonic() + policy.cooldown_s
        log.info("autoscaled queue %s from %d to %d workers", queue, result.previous, result.current)
        return result.current
