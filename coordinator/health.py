"""`get_health()`: Redis, its settings that lose jobs, managed workers and every queue, in a few
round trips, so a probe may call it every few seconds.

    unhealthy  Redis cannot be reached; the registry was lost; a queue has waiting jobs and no
               live worker anywhere (paused or not: the reason says when the queue is paused)
    degraded   Redis is slow, may evict keys or keeps nothing on disk, or a persistence write
               failed; a managed worker is not running (crashed, restarting) or its heartbeat
               is stale; a queue passes a threshold (backlog, oldest waiting job, error rate)
    healthy    none of the above

Every reason is listed. No output carries the Redis password (`settings.redact_url`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from coordinator.clock import now_ms
from coordinator.errors import ConfigurationError, RedisUnavailableError
from coordinator.heartbeats import HeartbeatStore
from coordinator.keys import STATE_INDEXES
from coordinator.metrics import TOTAL_FIELDS, Totals, window_fields, window_metrics
from coordinator.models import (
    Health,
    HealthCheck,
    HealthStatus,
    HealthThresholds,
    QueueCounts,
    QueueMetrics,
    WorkerState,
    WorkerStatus,
)
from coordinator.queues import queue_health
from coordinator.redis_checks import check_redis_settings, safe_message
from coordinator.registry import Registry
from coordinator.settings import Settings, redact_url

_ORDER = {HealthStatus.HEALTHY: 0, HealthStatus.DEGRADED: 1, HealthStatus.UNHEALTHY: 2}


def worst(statuses: list[HealthStatus]) -> HealthStatus:
    return max(statuses, key=_ORDER.__getitem__, default=HealthStatus.HEALTHY)


@dataclass
class QueueSnapshot:
    """What the health check, the exporter and the CLI report about one queue, read together."""

    name: str
    paused: bool
    counts: QueueCounts
    oldest_waiting_s: float | None
    metrics: QueueMetrics
    finished_in_window: int
    live_workers: int
    totals: Totals = field(default_factory=lambda: Totals({}))
    """Counts since the queue began and the processing-time histogram."""


def read_queue_snapshots(registry: Registry, heartbeats: HeartbeatStore) -> list[QueueSnapshot]:
    """Every queue's counts, oldest waiting job, metrics and live workers, in a few round trips."""
    names = registry.queue_names()
    window = window_fields()
    pipe = registry.client.pipeline(transaction=False)
    heartbeats.queue_live_nodes(pipe)
    for name in names:
        qk = registry.queue_keys(name)
        pipe.hget(qk.meta, "paused")
        for state in STATE_INDEXES:
            pipe.zcard(qk.index(state))
        pipe.zrange(qk.index("waiting"), 0, 0, withscores=True)
        pipe.hmget(qk.metrics, window + TOTAL_FIELDS)
    replies = pipe.execute()
    live = heartbeats.live_by_queue(replies[0])
    per = 3 + len(STATE_INDEXES)
    now = now_ms()
    snapshots = []
    for i, name in enumerate(names):
        paused, *rest = replies[1 + i * per : 1 + (i + 1) * per]
        counts = QueueCounts(**dict(zip(STATE_INDEXES, rest[: len(STATE_INDEXES)])))
        oldest, values = rest[len(STATE_INDEXES):]
        metrics, finished = window_metrics(window, values[: len(window)])
        snapshots.append(QueueSnapshot(
            name=name, paused=paused == "1", counts=counts,
            oldest_waiting_s=max(0.0, (now - oldest[0][1]) / 1000) if oldest else None,
            metrics=metrics, finished_in_window=finished, live_workers=live.get(name, 0),
            totals=Totals.from_values(values[len(window):]),
        ))
    return snapshots


class HealthChecker:
    """The checks behind `get_health()`, over the parts they read."""

    def __init__(self, registry: Registry, heartbeats: HeartbeatStore, settings: Settings,
                 managed_workers: Callable[[], list[WorkerStatus]]) -> None:
        self.registry = registry
        self.heartbeats = heartbeats
        self.settings = settings
        self.managed_workers = managed_workers

    def check(self, thresholds: HealthThresholds | None = None) -> Health:
        """Check Redis, its settings, the managed workers and every queue; see the module docstring."""
        limits = thresholds or HealthThresholds()
        checks = [self._check_redis(limits)]
        reachable = checks[0].status is not HealthStatus.UNHEALTHY
        if reachable:
            checks += check_redis_settings(self.registry, self.settings, limits)
        checks.append(self._check_workers(limits, reachable=reachable))
        if reachable:
            try:
                checks += [_queue_check(snap, limits) for snap in self.queue_snapshots()]
            except RedisUnavailableError as exc:
                checks.append(HealthCheck(name="queues", status=HealthStatus.UNHEALTHY,
                                          detail=f"could not read the queues: {safe_message(self.settings, exc)}"))
        reasons = [f"{c.name}: {c.detail}" for c in checks if c.status is not HealthStatus.HEALTHY]
        return Health(status=worst([c.status for c in checks]), checks=checks, reasons=reasons,
                      checked_at=datetime.now(timezone.utc))

    def queue_snapshots(self) -> list[QueueSnapshot]:
        """Every queue's counts, oldest waiting job, metrics and live workers, read together."""
        return read_queue_snapshots(self.registry, self.heartbeats)

    def _check_redis(self, limits: HealthThresholds) -> HealthCheck:
        url = redact_url(self.settings.url)
        started = time.perf_counter()
        try:
            self.registry.client.ping()
        except (RedisUnavailableError, ConfigurationError, OSError) as exc:
            return HealthCheck(name="redis", status=HealthStatus.UNHEALTHY, data={"url": url},
                               detail=f"cannot reach Redis at {url}: {safe_message(self.settings, exc)}")
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        data = {"url": url, "latency_ms": latency_ms}
        if latency_ms > limits.max_redis_latency_ms:
            return HealthCheck(name="redis", status=HealthStatus.DEGRADED, data=data,
                               detail=f"PING took {latency_ms:.0f} ms, over {limits.max_redis_latency_ms:g} ms")
        return HealthCheck(name="redis", status=HealthStatus.HEALTHY, data=data, detail=f"PING {latency_ms:.1f} ms")

    def _check_workers(self, limits: HealthThresholds, reachable: bool) -> HealthCheck:
        """This coordinator's managed workers: running with a fresh heartbeat, against those expected."""
        workers = self.managed_workers()
        stale: dict[str, int | None] = {}
        if reachable and workers:
            try:
                beats = self.heartbeats.last_beats([w.node_name for w in workers])
            except RedisUnavailableError:
                beats = [None] * len(workers)
            now = now_ms()
            stale = {w.id: (now - b) if b else None for w, b in zip(workers, beats)}
        problems = []
        alive = 0
        for worker in workers:
            if worker.state not in (WorkerState.RUNNING, WorkerState.PAUSED):
                problems.append(f"worker {worker.id} ({worker.queue}) is {worker.state.value}")
                continue
            age = stale.get(worker.id, 0)
            if reachable and (age is None or age > limits.max_heartbeat_age_s * 1000):
                problems.append(f"worker {worker.id} ({worker.queue}) has no fresh heartbeat"
                                + (f" ({age / 1000:.0f} s old)" if age else ""))
                continue
            alive += 1
        data = {"expected": len(workers), "alive": alive}
        if problems:
            return HealthCheck(name="workers", status=HealthStatus.DEGRADED, data=data,
                               detail=f"{alive} of {len(workers)} managed workers alive; " + "; ".join(problems))
        return HealthCheck(name="workers", status=HealthStatus.HEALTHY, data=data,
                           detail=f"{alive} of {len(workers)} managed workers alive")


def _queue_check(snap: QueueSnapshot, limits: HealthThresholds) -> HealthCheck:
    health = queue_health(snap.counts, snap.metrics, snap.live_workers, paused=snap.paused,
                          oldest_waiting_s=snap.oldest_waiting_s, finished=snap.finished_in_window,
                          thresholds=limits)
    data = {
        "paused": snap.paused, "counts": snap.counts.model_dump(), "oldest_waiting_s": snap.oldest_waiting_s,
        "live_workers": snap.live_workers, "metrics": snap.metrics.model_dump(),
    }
    detail = "; ".join(health.reasons) or f"{snap.counts.waiting} waiting, {snap.live_workers} live workers"
    return HealthCheck(name=f"queue {snap.name}", status=health.status, detail=detail, data=data)
