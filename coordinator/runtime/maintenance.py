"""The sweeps every worker runs from its main process, and the bootstep that starts them.

Every few hundred ms: move due delayed jobs to waiting and dispatch parked jobs whose hold is
over. Every stalled interval: recover jobs whose lock expired. Every few seconds: heartbeat,
trim finished jobs per retention. All moves are atomic scripts, so any number of workers may
sweep the same queue at once.

The heartbeat hash (`keys.worker(node)`) is the worker's status for any reader on any host:
state (running / paused), pool size and autoscale bounds, active requests, processed and
failed counts (counted by `runtime.task` where the job ran, in the same hash), RSS of the process tree. The pause
flag (`keys.worker_paused(node)`) is polled here: control broadcasts are lost by a worker that
is not yet subscribed, a flag in Redis is not.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

import psutil
from celery import bootsteps
from celery.worker import state as worker_state

from coordinator.errors import CoordinatorError, QueueNotFoundError
from coordinator.health import redis_settings_warnings
from coordinator.registry.registry import now_ms

if TYPE_CHECKING:
    from coordinator.facade import JobQueueCoordinator

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 2.0
TRIM_INTERVAL_S = 5.0
#: How often a worker looks at its pause flag.
PAUSE_POLL_S = 0.25
#: The heartbeat hash expires this long after the last beat.
HEARTBEAT_TTL_MS = int(HEARTBEAT_INTERVAL_S * 5000)


class Maintenance:
    """One background thread doing the sweeps for the coordinator queues a worker consumes."""

    def __init__(self, coord: JobQueueCoordinator, queues: list[str], node_name: str,
                 consumer: Any = None) -> None:
        self.coord = coord
        self.queues = queues
        self.node_name = node_name
        self.consumer = consumer
        self.paused = False
        """The pause flag as last read."""
        self.applied_paused = False
        """Whether the consumers are cancelled (set in the consumer's thread)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jqc-maintenance", daemon=True)
        self._next: dict[str, float] = {}

    def start(self) -> None:
        """Apply a pause flag set before the worker started (no message is fetched), then beat."""
        self._reconcile_pause(in_loop=False)
        self._heartbeat(first=True)
        self._record_processor_names()
        self._warn_about_redis()
        self._thread.start()

    def _record_processor_names(self) -> None:
        for queue in self.queues:
            handler = self.coord.processors.get(queue)
            if handler is not None:
                self.coord.registry.set_processor_name(queue, handler.__name__)

    def _warn_about_redis(self) -> None:
        """Say at start what in Redis's configuration can lose jobs (also shown by get_health)."""
        try:
            for warning in redis_settings_warnings(self.coord):
                log.warning("Redis can lose jobs: %s", warning)
        except CoordinatorError:
            log.warning("could not read the Redis configuration", exc_info=True)

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
                if self._due("pause", PAUSE_POLL_S):
                    self._reconcile_pause(in_loop=True)
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
                if self.coord.settings.broker_is_redis:
                    registry.recover_unstarted(queue, self.coord.settings.lock_duration_ms)
                elif registry.after_dispatch is not None:
                    # messages a producer wrote to the outbox but died before publishing
                    registry.after_dispatch(queue)
            if trim:
                registry.trim(queue, config.retention)
                registry.trim_metrics(queue)

    def _reconcile_pause(self, in_loop: bool) -> None:
        """Cancel or re-add this worker's consumers when its pause flag changed."""
        if self.consumer is None:
            return
        paused = bool(self.coord.registry.client.exists(self.coord.keys.worker_paused(self.node_name)))
        if paused == self.paused:
            return
        self.paused = paused
        if in_loop:  # the consumer is not thread-safe: run it in the worker's event loop
            self.consumer.call_soon(self._apply_pause, paused)
        else:
            self._apply_pause(paused)

    def _apply_pause(self, paused: bool) -> None:
        """Runs in the consumer's thread; the heartbeat says ``paused`` only once this ran."""
        for queue in self.queues:
            if queue in self.coord.async_queues:
                continue  # the event loop's own consumer reads the pause flag itself
            celery_queue = self.coord.keys.for_queue(queue).celery_queue
            if paused:
                self.consumer.cancel_task_queue(celery_queue)
            else:
                self.consumer.add_task_queue(celery_queue)
        self.applied_paused = paused
        key = self.coord.keys.worker(self.node_name)
        pipe = self.coord.registry.client.pipeline(transaction=True)
        pipe.hset(key, "state", self._state)
        pipe.pexpire(key, HEARTBEAT_TTL_MS)
        pipe.execute()
        log.info("worker %s %s", self.node_name, self._state)

    @property
    def _state(self) -> str:
        return "paused" if self.applied_paused else "running"

    def _heartbeat(self, first: bool = False) -> None:
        """Write this worker's status hash; the first beat of a process starts it afresh."""
        keys = self.coord.keys
        key = keys.worker(self.node_name)
        record: dict[str, Any] = {
            "node": self.node_name, "pid": os.getpid(), "host": socket.gethostname(),
            "queues": ",".join(self.queues), "heartbeat": now_ms(),
            "state": self._state,
            "active": len(worker_state.active_requests), **self._pool_fields(),
        }
        if self.coord.async_queues:  # jobs run as coroutines of this process (runtime.async_runner)
            record.update(active=self.coord.async_runner.active, concurrency=self.coord.async_runner.concurrency)
        rss = _tree_rss()
        if rss is not None:
            record["rss"] = rss
        pipe = self.coord.registry.client.pipeline(transaction=True)
        if first:
            pipe.delete(key)
            pipe.hset(key, mapping={"processed": 0, "failed": 0})
        pipe.hset(key, mapping=record)
        pipe.hsetnx(key, "started", now_ms())
        pipe.pexpire(key, HEARTBEAT_TTL_MS)
        pipe.zadd(keys.workers, {self.node_name: now_ms()})
        pipe.execute()

    def _pool_fields(self) -> dict[str, Any]:
        """Current pool size and, with --autoscale, its bounds."""
        pool = getattr(self.consumer, "pool", None)
        fields: dict[str, Any] = {}
        size = getattr(pool, "num_processes", None)
        if isinstance(size, int):
            fields["concurrency"] = size
        controller = getattr(self.consumer, "controller", None)
        autoscaler = getattr(controller, "autoscaler", None)
        if autoscaler is not None:
            fields["autoscale_max"] = autoscaler.max_concurrency
            fields["autoscale_min"] = autoscaler.min_concurrency
        return fields


def _tree_rss() -> int | None:
    """Resident memory of this process and its children (prefork pool processes), in bytes."""
    try:
        me = psutil.Process()
        total = me.memory_info().rss
        for child in me.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        return total
    except psutil.Error:
        return None


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
            self.maintenance = Maintenance(coord, queues, parent.hostname, parent)
            self.maintenance.start()

        def stop(self, parent: Any) -> None:
            if self.maintenance is not None:
                self.maintenance.stop()
                self.maintenance = None

        shutdown = stop

    return CoordinatorMaintenance
