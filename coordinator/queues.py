"""QueueManager: queue lifecycle (create, read, pause, resume, delete) and queue status."""

from __future__ import annotations

import time
from typing import Any

from coordinator.groups import GroupOps
from coordinator.heartbeats import HeartbeatOps, HeartbeatStore
from coordinator.metrics import DEDUPLICATED_TOTAL, METRICS_WINDOW_MIN, series, window_fields, window_metrics
from coordinator.models import (
    HealthStatus,
    HealthThresholds,
    MetricsPoint,
    QueueConfig,
    QueueCounts,
    QueueHealth,
    QueueInfo,
    QueueMetrics,
    QueueStatus,
)
from coordinator.registry import Registry
from coordinator.registry.calls import Op
from coordinator.registry.codec import from_ms
from coordinator.registry.ops import RegistryOps
from coordinator.settings import Settings


def queue_config(config: QueueConfig | str, fields: dict[str, Any]) -> QueueConfig:
    """The config `create_queue` saves: built from a name and fields, or ``config`` with ``fields`` over it."""
    if isinstance(config, str):
        return QueueConfig(name=config, **fields)
    if fields:
        return config.model_copy(update=QueueConfig(name=config.name, **fields).model_dump(exclude_unset=True))
    return config


class QueueReads:
    """The queue reads the sync and async clients share, as sans-IO operations (run them with
    `Registry.run` or `AsyncRegistry.run`), with one client's cache of queue configs."""

    def __init__(self, ops: RegistryOps, heartbeats: HeartbeatOps, settings: Settings) -> None:
        self.ops = ops
        self.heartbeats = heartbeats
        self.settings = settings
        self._configs: dict[str, tuple[float, QueueConfig, str | None]] = {}

    def fresh(self, name: str) -> tuple[float, QueueConfig, str | None] | None:
        """The cached (when read, config, processor name) if read less than `config_cache_s` ago."""
        cached = self._configs.get(name)
        if cached and time.monotonic() - cached[0] < self.settings.config_cache_s:
            return cached
        return None

    def cached_op(self, name: str) -> Op[tuple[float, QueueConfig, str | None]]:
        """(when read, config, processor name), read at most `config_cache_s` ago."""
        cached = self.fresh(name)
        if cached is not None:
            return cached
        meta = yield from self.ops.queue_meta(name)
        cached = (time.monotonic(), QueueConfig.model_validate_json(meta["config"]), meta.get("processor"))
        self._configs[name] = cached
        return cached

    def cached_processor(self, name: str) -> str | None:
        """The processor name of the cached config of ``name``, without any read (None if not cached)."""
        cached = self._configs.get(name)
        return cached[2] if cached else None

    def forget(self, name: str) -> None:
        """Drop the cached config of ``name`` (it was saved or deleted)."""
        self._configs.pop(name, None)

    def info_op(self, name: str) -> Op[QueueInfo]:
        meta = yield from self.ops.queue_meta(name)
        return QueueInfo(
            name=name, celery_queue=self.ops.queue_keys(name).celery_queue,
            config=QueueConfig.model_validate_json(meta["config"]),
            paused=meta.get("paused") == "1", created_at=from_ms(meta["created"]),
        )

    def save_op(self, config: QueueConfig) -> Op[QueueInfo]:
        """Save the config (no epoch check: `Registry.save_queue` does that) and read it back."""
        yield from self.ops.save_queue(config)
        self.forget(config.name)
        return (yield from self.info_op(config.name))

    def status_op(self, name: str) -> Op[QueueStatus]:
        meta = yield from self.ops.queue_meta(name)
        counts = yield from self.ops.counts(name)
        metrics, deduplicated = yield from self._metrics_op(name, METRICS_WINDOW_MIN, [DEDUPLICATED_TOTAL])
        workers = (yield from self.heartbeats.live_by_queue()).get(name, 0)
        paused = meta.get("paused") == "1"
        config = QueueConfig.model_validate_json(meta["config"])
        groups = yield from GroupOps(self.ops).status_op(name, config)
        return QueueStatus(name=name, paused=paused, counts=counts,
                           health=queue_health(counts, metrics, workers, paused=paused), workers=workers,
                           deduplicated=int(deduplicated[0] or 0), **groups)

    def metrics_op(self, name: str, window_min: int = METRICS_WINDOW_MIN) -> Op[QueueMetrics]:
        return (yield from self._metrics_op(name, window_min, []))[0]

    def _metrics_op(self, name: str, window_min: int, extra: list[str]) -> Op[tuple[QueueMetrics, list[str | None]]]:
        """The window's metrics, and the values of ``extra`` fields of the hash read with them."""
        fields = window_fields(window_min)
        values = yield from self.ops.hash_fields(self.ops.queue_keys(name).metrics, fields + extra)
        return window_metrics(fields, values[: len(fields)], window_min)[0], values[len(fields):]


class QueueManager:
    """Creates and configures queues; reports their counts, metrics and health."""

    def __init__(self, registry: Registry, settings: Settings, heartbeats: HeartbeatStore) -> None:
        self.registry = registry
        self.settings = settings
        self.heartbeats = heartbeats
        self.reads = QueueReads(registry.ops, heartbeats.ops, settings)

    def create_queue(self, config: QueueConfig | str, **fields: Any) -> QueueInfo:
        """Create a queue, or update its config; idempotent for the same config."""
        config = queue_config(config, fields)
        self.registry.save_queue(config)
        self.reads.forget(config.name)
        return self.get_queue(config.name)

    def get_queue(self, name: str) -> QueueInfo:
        return self.registry.run(self.reads.info_op(name))

    def get_queue_names(self) -> list[str]:
        return self.registry.queue_names()

    def cached_config(self, name: str) -> QueueConfig:
        """The queue's config as read at most `config_cache_s` ago (hot paths use this)."""
        return (self.reads.fresh(name) or self.registry.run(self.reads.cached_op(name)))[1]

    def processor_name(self, name: str) -> str | None:
        """The name of the queue's processor, as its workers recorded it (cached like the config)."""
        return (self.reads.fresh(name) or self.registry.run(self.reads.cached_op(name)))[2]

    def pause_queue(self, name: str) -> None:
        """No worker, present or future, starts a new job of the queue until `resume_queue`."""
        self.registry.set_paused(name, True)

    def resume_queue(self, name: str) -> None:
        """Let the queue's jobs run again; the jobs held while paused are dispatched now."""
        self.registry.set_paused(name, False)
        limiter = self.cached_config(name).limiter
        while self.registry.release_parked(name, limiter) and limiter is None:
            pass
        self.registry.release_groups(name)

    def delete_queue(self, name: str) -> None:
        """Remove the queue with its jobs, events, metrics and keys."""
        self.registry.queue_meta(name)
        self.registry.delete_queue(name)
        self.reads.forget(name)

    def get_queue_status(self, name: str) -> QueueStatus:
        return self.registry.run(self.reads.status_op(name))

    def metrics(self, name: str, window_min: int = METRICS_WINDOW_MIN) -> QueueMetrics:
        """Throughput, error rate and mean processing time over the last ``window_min`` minutes."""
        return self.registry.run(self.reads.metrics_op(name, window_min))

    def metrics_series(self, name: str, minutes: int = 60) -> list[MetricsPoint]:
        """The last ``minutes`` minutes of per-minute metrics, oldest first, the current minute last."""
        self.registry.queue_meta(name)
        fields = window_fields(minutes)
        return series(fields, self.registry.client.hmget(self.registry.queue_keys(name).metrics, fields))

    def live_worker_count(self, name: str) -> int:
        """Workers on any host whose heartbeat is fresh and that consume this queue."""
        return self.heartbeats.live_by_queue().get(name, 0)


def queue_health(counts: QueueCounts, metrics: QueueMetrics, workers: int, *, paused: bool = False,
                 oldest_waiting_s: float | None = None, finished: int | None = None,
                 thresholds: HealthThresholds | None = None) -> QueueHealth:
    """Unhealthy when jobs wait and no worker is live anywhere (as API.md has it, paused or not: the
    reason says when the queue is paused); degraded past the thresholds (backlog, age of the
    oldest waiting job, error rate)."""
    limits = thresholds or HealthThresholds()
    reasons = []
    status = HealthStatus.HEALTHY
    if counts.waiting and not workers:
        reasons.append(f"{counts.waiting} jobs waiting and no live worker" + (" (queue paused)" if paused else ""))
        status = HealthStatus.UNHEALTHY
    if counts.waiting > limits.max_backlog:
        reasons.append(f"backlog of {counts.waiting} waiting jobs over {limits.max_backlog}")
    if oldest_waiting_s is not None and oldest_waiting_s > limits.max_oldest_waiting_s:
        reasons.append(f"oldest waiting job is {oldest_waiting_s:.1f} s old, over {limits.max_oldest_waiting_s:g} s")
    enough = finished is None or finished >= limits.min_finished_for_error_rate
    if enough and metrics.error_rate > limits.max_error_rate:
        reasons.append(f"error rate {metrics.error_rate:.0%} over {limits.max_error_rate:.0%}")
    if reasons and status is HealthStatus.HEALTHY:
        status = HealthStatus.DEGRADED
    return QueueHealth(status=status, reasons=reasons, metrics=metrics)
