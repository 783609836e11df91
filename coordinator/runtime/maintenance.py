"""The sweeps every worker runs from its main process, and the bootstep that starts them.

Every few hundred ms: move due delayed jobs to waiting and dispatch parked jobs whose hold is
over. Every stalled interval: recover jobs whose lock expired. Every few seconds: heartbeat,
trim finished jobs per retention. All moves are atomic scripts, so any number of workers may
sweep the same queue at once.

The heartbeat (`coordinator.heartbeats`) is the worker's status for any reader on any host,
written from here. The pause flag is polled here: control broadcasts are lost by a worker that
is not yet subscribed, a flag in Redis is not.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import psutil
from celery import bootsteps
from celery.worker import state as worker_state

from coordinator.errors import CoordinatorError, QueueNotFoundError
from coordinator.flows.handoff import HandOff
from coordinator.heartbeats import HEARTBEAT_INTERVAL_S, PAUSED, RUNNING, HeartbeatStore
from coordinator.models import QueueConfig
from coordinator.redis_checks import redis_settings_warnings
from coordinator.registry import Registry
from coordinator.settings import Settings

if TYPE_CHECKING:
    from coordinator.runtime.async_runner import AsyncRunner

log = logging.getLogger(__name__)

TRIM_INTERVAL_S = 5.0
#: How often the heartbeat's RSS of the process tree is measured: psutil reads every process's
#: /proc entry to find the children, which took ~8 % of the worker main process's busy time when
#: done at every beat on a shared machine.
RSS_INTERVAL_S = 30.0
#: How often a worker looks at its pause flag.
PAUSE_POLL_S = 0.25


class WorkerParts:
    """What the maintenance of a worker uses: the registry, settings, queue configs (cached),
    the heartbeat store, the processors registered in this process, the flow hand-off, and this
    process's event loop for async processors if it has one (`runtime.async_runner`)."""

    def __init__(self, registry: Registry, settings: Settings, config_of: Callable[[str], QueueConfig],
                 heartbeats: HeartbeatStore, processors: Mapping[str, Callable[..., Any]],
                 handoff: HandOff | None = None,
                 async_runner: Callable[[], AsyncRunner | None] = lambda: None) -> None:
        self.registry = registry
        self.settings = settings
        self.config_of = config_of
        self.heartbeats = heartbeats
        self.processors = processors
        self.handoff = handoff
        """Applies flow hand-offs a dead process left (`coordinator.flows.handoff`)."""
        self.async_runner = async_runner


class Maintenance:
    """One background thread doing the sweeps for the coordinator queues a worker consumes."""

    def __init__(self, parts: WorkerParts, queues: list[str], node_name: str, consumer: Any = None) -> None:
        self.parts = parts
        self.registry = parts.registry
        self.settings = parts.settings
        self.heartbeats = parts.heartbeats
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
        self._rss: int | None = None

    def start(self) -> None:
        """Apply a pause flag set before the worker started (no message is fetched), then beat."""
        self._reconcile_pause(in_loop=False)
        self._heartbeat(first=True)
        self._record_processor_names()
        self._warn_about_redis()
        self._thread.start()

    def _record_processor_names(self) -> None:
        for queue in self.queues:
            handler = self.parts.processors.get(queue)
            if handler is not None:
                self.registry.set_processor_name(queue, handler.__name__)

    def _warn_about_redis(self) -> None:
        """Say at start what in Redis's configuration can lose jobs (also shown by get_health)."""
        try:
            for warning in redis_settings_warnings(self.registry, self.settings):
                log.warning("Redis can lose jobs: %s", warning)
        except CoordinatorError:
            log.warning("could not read the Redis configuration", exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        try:
            self.heartbeats.remove(self.node_name)
        except Exception:
            log.warning("could not remove the heartbeat of %s", self.node_name, exc_info=True)

    def _due(self, name: str, interval_s: float) -> bool:
        now = time.monotonic()
        if now < self._next.get(name, 0):
            return False
        self._next[name] = now + interval_s
        return True

    def _run(self) -> None:
        settings = self.settings
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
                if settings.broker_is_redis and self._due("hold", settings.lock_duration_ms / 3000):
                    self._hold_messages()
            except Exception:  # Redis away for a moment: the next round tries again
                log.warning("maintenance sweep failed", exc_info=True)

    def sweep_once(self, stalled: bool = True, trim: bool = True) -> None:
        registry = self.registry
        settings = self.settings
        for queue in self.queues:
            try:
                config = self.parts.config_of(queue)
            except QueueNotFoundError:
                continue
            registry.promote_due(queue)
            registry.release_parked(queue, config.limiter)
            registry.release_capped(queue, config.concurrency)
            registry.release_groups(queue)
            if stalled:
                registry.recover_stalled(queue, settings.max_stalled_count)
                if self.parts.handoff is not None:
                    self.parts.handoff.sweep(queue)  # flow hand-offs a dead process left
                if settings.broker_is_redis:
                    registry.recover_unstarted(queue, settings.lock_duration_ms)
                elif registry.after_dispatch is not None:
                    # messages a producer wrote to the outbox but died before publishing
                    registry.after_dispatch(queue)
            if trim:
                registry.trim(queue, config.retention)
                registry.trim_metrics(queue)

    def _hold_messages(self) -> None:
        """Mark the messages this worker holds (prefetched or running) as held, as a job's lock
        is renewed: `Registry.recover_unstarted` takes only messages unheld for a lock duration
        to be stranded by a dead worker, and kombu restores none of them while the worker lives."""
        requests = tuple(worker_state.requests.values())  # one C-level copy: safe across threads
        tags = [request.message.delivery_tag for request in requests if request.message is not None]
        if tags:
            self.registry.hold_unacked(tags)

    def _reconcile_pause(self, in_loop: bool) -> None:
        """Cancel or re-add this worker's consumers when its pause flag changed."""
        if self.consumer is None:
            return
        paused = self.heartbeats.pause_requested(self.node_name)
        if paused == self.paused:
            return
        self.paused = paused
        if in_loop:  # the consumer is not thread-safe: run it in the worker's event loop
            self.consumer.call_soon(self._apply_pause, paused)
        else:
            self._apply_pause(paused)

    def _apply_pause(self, paused: bool) -> None:
        """Runs in the consumer's thread; the heartbeat says ``paused`` only once this ran."""
        runner = self.parts.async_runner()
        for queue in self.queues:
            if runner is not None and queue in runner.own_queues:
                continue  # the event loop's own consumer reads the pause flag itself
            celery_queue = self.registry.queue_keys(queue).celery_queue
            if paused:
                self.consumer.cancel_task_queue(celery_queue)
            else:
                self.consumer.add_task_queue(celery_queue)
        self.applied_paused = paused
        self.heartbeats.set_state(self.node_name, paused)
        log.info("worker %s %s", self.node_name, self._state)

    @property
    def _state(self) -> str:
        return PAUSED if self.applied_paused else RUNNING

    def _heartbeat(self, first: bool = False) -> None:
        """Write this worker's status hash; the first beat of a process starts it afresh."""
        record: dict[str, Any] = {
            "pid": os.getpid(), "host": socket.gethostname(), "queues": ",".join(self.queues),
            "state": self._state, "active": len(worker_state.active_requests),
            "held": len(worker_state.reserved_requests), **self._pool_fields(),
        }
        runner = self.parts.async_runner()
        if runner is not None and runner.own_queues:  # its jobs run as coroutines of this process
            record.update(active=runner.active, concurrency=runner.concurrency)
        if first or self._due("rss", RSS_INTERVAL_S):
            self._rss = _tree_rss()
        if self._rss is not None:
            record["rss"] = self._rss
        self.heartbeats.beat(self.node_name, record, first=first)

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


def maintenance_step(parts: WorkerParts) -> type[bootsteps.StartStopStep]:
    """A consumer bootstep that runs `Maintenance` once the worker consumes its queues."""

    class CoordinatorMaintenance(bootsteps.StartStopStep):
        requires = ("celery.worker.consumer.tasks:Tasks",)
        label = f"coordinator maintenance ({parts.settings.prefix})"

        def __init__(self, parent: Any, **kwargs: Any) -> None:
            super().__init__(parent, **kwargs)
            self.maintenance: Maintenance | None = None
            self.started = False

        def start(self, parent: Any) -> None:
            consumed = parent.app.amqp.queues.consume_from or {}
            queues = [q for q in (parts.registry.keys.queue_of(name) for name in consumed) if q]
            if not queues:
                return
            if self.started and parts.settings.broker_is_redis:
                # The consumer restarts its steps after it lost the broker connection: the message
                # its BRPOP had answered then (not yet in the unacked hash) is nowhere, as when a
                # worker is SIGKILLed between the two (docs/guarantees.md).
                for queue in queues:
                    recovered = parts.registry.recover_lost(queue)
                    if recovered:
                        log.warning("broker connection lost: %d job(s) of queue %s dispatched again",
                                    len(recovered), queue)
            self.started = True
            self.maintenance = Maintenance(parts, queues, parent.hostname, parent)
            self.maintenance.start()

        def stop(self, parent: Any) -> None:
            if self.maintenance is not None:
                self.maintenance.stop()
                self.maintenance = None

        shutdown = stop

    return CoordinatorMaintenance
