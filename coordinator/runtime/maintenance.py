"""The sweeps every worker runs from its main process, and the bootstep that starts them.

Every few hundred ms: move due delayed jobs to waiting and dispatch parked jobs whose hold is
over. Every stalled interval: recover jobs whose lock expired. Every few seconds: heartbeat,
trim finished jobs per retention. All moves are atomic scripts, so any number of workers may
sweep the same queue at once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

from celery import bootsteps

from coordinator.errors import QueueNotFoundError
from coordinator.registry.registry import now_ms

if TYPE_CHECKING:
    from coordinator.facade import JobQueueCoordinator

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 2.0
TRIM_INTERVAL_S = 5.0


class Maintenance:
    """One background thread doing the sweeps for the coordinator queues a worker consumes."""

    def __init__(self, coord: JobQueueCoordinator, queues: list[str], node_name: str) -> None:
        self.coord = coord
        self.queues = queues
        self.node_name = node_name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jqc-maintenance", daemon=True)
        self._next: dict[str, float] = {}

    def start(self) -> None:
        self._heartbeat()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        try:
            self.coord.registry.client.delete(self.coord.keys.worker(self.node_name))
            self.coord.registry.client.zrem(self.coord.keys.workers, self.node_name)
        except Exception:
            log.warning("could not remove the heartbeat of %s", self.node_name, exc_info=True)

    def _due(self, name: str, interval_s: float) -> bool:
        now = time.monotonic()
        if now < self._next.get(name, 0):
            return False
        self._next[name] = now + interval_s
        return True

    def _run(self) -> None:
        settings = self.coord.settings
        while not self._stop.wait(settings.promote_interval_ms / 1000):
            try:
                self.sweep_once(
                    stalled=self._due("stalled", settings.stalled_interval_ms / 1000),
                    trim=self._due("trim", TRIM_INTERVAL_S),
                )
                if self._due("heartbeat", HEARTBEAT_INTERVAL_S):
                    self._heartbeat()
            except Exception:  # Redis away for a moment: the next round tries again
                log.warning("maintenance sweep failed", exc_info=True)

    def sweep_once(self, stalled: bool = True, trim: bool = True) -> None:
        registry = self.coord.registry
        for queue in self.queues:
            try:
                config = self.coord.queues.cached_config(queue)
            except QueueNotFoundError:
                continue
            registry.promote_due(queue)
            registry.release_parked(queue, config.limiter)
            if stalled:
                registry.recover_stalled(queue, self.coord.settings.max_stalled_count)
            if trim:
                registry.trim(queue, config.retention)
                registry.trim_metrics(queue)

    def _heartbeat(self) -> None:
        keys = self.coord.keys
        record: dict[str, Any] = {
            "node": self.node_name, "pid": os.getpid(), "host": socket.gethostname(),
            "queues": ",".join(self.queues), "heartbeat": now_ms(),
        }
        pipe = self.coord.registry.client.pipeline(transaction=True)
        pipe.hset(keys.worker(self.node_name), mapping=record)
        pipe.hsetnx(keys.worker(self.node_name), "started", now_ms())
        pipe.pexpire(keys.worker(self.node_name), int(HEARTBEAT_INTERVAL_S * 5000))
        pipe.zadd(keys.workers, {self.node_name: now_ms()})
        pipe.execute()


def maintenance_step(coord: JobQueueCoordinator) -> type[bootsteps.StartStopStep]:
    """A consumer bootstep that runs `Maintenance` once the worker consumes its queues."""

    class CoordinatorMaintenance(bootsteps.StartStopStep):
        requires = ("celery.worker.consumer.tasks:Tasks",)
        label = f"coordinator maintenance ({coord.settings.prefix})"

        def __init__(self, parent: Any, **kwargs: Any) -> None:
            super().__init__(parent, **kwargs)
            self.maintenance: Maintenance | None = None

        def start(self, parent: Any) -> None:
            consumed = parent.app.amqp.queues.consume_from or {}
            queues = [q for q in (coord.keys.queue_of(name) for name in consumed) if q]
            if not queues:
                return
            self.maintenance = Maintenance(coord, queues, parent.hostname)
            self.maintenance.start()

        def stop(self, parent: Any) -> None:
            if self.maintenance is not None:
                self.maintenance.stop()
                self.maintenance = None

        shutdown = stop

    return CoordinatorMaintenance
