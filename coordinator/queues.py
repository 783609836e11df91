"""QueueManager: queue lifecycle (create, read, pause, resume, delete) and queue status."""

from __future__ import annotations

import time
from typing import Any

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
from coordinator.registry.ops import RegistryOps, now_ms
from coordinator.settings import Settings

#: Minutes of per-minute metrics that `get_queue_status` averages over.
METRICS_WINDOW_MIN = 5
#: A worker whose heartbeat is older than this is not counted as live.
WORKER_LIVE_MS = 10_000
#: Thresholds past which a queue's health is ``degraded``: `HealthThresholds`.


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

    def __init__(self, ops: RegistryOps, settings: Settings) -> None:
        self.ops = ops
        self.settings = settings
        self._configs: dict[str, tuple[float, QueueConfig, str | None]] = {}

    def cached_op(self, name: str) -> Op[tuple[float, QueueConfig, str | None]]:
        """(when read, config, processor name), read at most `config_cache_s` ago."""
        cached = self._configs.get(name)
        if cached and time.monotonic() - cached[0] < self.settings.config_cache_s:
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
        metrics = yield from self.metrics_op(name)
        workers = yield from self.live_worker_count_op(name)
        paused = meta.get("paused") == "1"
        return QueueStatus(name=name, paused=paused, counts=counts,
                           health=queue_health(counts, metrics, workers, paused=paused), workers=workers)

    def metrics_op(self, name: str, window_min: int = METRICS_WINDOW_MIN) -> Op[QueueMetrics]:
        fields = metrics_fields(window_min)
        values = yield from self.ops.hash_fields(self.ops.queue_keys(name).metrics, fields)
        return metrics_from(fields, values, window_min)[0]

    def live_worker_count_op(self, name: str) -> Op[int]:
        queues = yield from self.ops.live_worker_queues(now_ms() - WORKER_LIVE_MS)
        return sum(1 for listed in queues if listed and name in listed.split(","))


class QueueManager:
    """Creates and configures queues; reports their counts, metrics and health."""

    def __init__(self, registry: Registry, settings: Settings) -> None:
        self.registry = registry
        self.settings = settings
        self.reads = QueueReads(registry.ops, settings)

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
        return self.registry.run(self.reads.cached_op(name))[1]

    def processor_name(self, name: str) -> str | None:
        """The name of the queue's processor, as its workers recorded it (cached like the config)."""
        return self.registry.run(self.reads.cached_op(name))[2]

    def pause_queue(self, name: str) -> None:
        """No worker, present or future, starts a new job of the queue until `resume_queue`."""
        self.registry.set_paused(name, True)

    def resume_queue(self, name: str) -> None:
        """Let the queue's jobs run again; the jobs held while paused are dispatched now."""
        self.registry.set_paused(name, False)
        limiter = self.cached_config(name).limiter
        while self.registry.release_parked(name, limiter) and limiter is None:
            pass

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
        fields = metrics_fields(minutes)
        values = self.registry.client.hmget(self.registry.queue_keys(name).metrics, fields)
        points = []
        for i in range(0, len(fields), 3):
            m = int(fields[i].split(":")[0])
            completed, failed, total_ms = (int(v or 0) for v in values[i : i + 3])
            finished = completed + failed
            points.append(MetricsPoint(
                minute=from_ms(m * 60_000), completed=completed, failed=failed, processing_time_ms=total_ms,
                average_processing_time=round(total_ms / finished, 3) if finished else 0.0,
            ))
        return points

    def live_worker_count(self, name: str) -> int:
        """Workers on any host whose heartbeat is fresh and that consume this queue."""
        return self.registry.run(self.reads.live_worker_count_op(name))


def metrics_fields(window_min: int = METRICS_WINDOW_MIN) -> list[str]:
    """The metrics-hash fields of the last ``window_min`` minutes (read them with one HMGET)."""
    minute = now_ms() // 60_000
    return [f"{m}:{kind}" for m in range(minute - window_min + 1, minute + 1) for kind in "cft"]


def metrics_from(fields: list[str], values: list[str | None], window_min: int = METRICS_WINDOW_MIN
                 ) -> tuple[QueueMetrics, int]:
    """The window's metrics from the values of `metrics_fields`, and how many jobs finished in it."""
    totals = {"c": 0, "f": 0, "t": 0}
    for field, value in zip(fields, values):
        totals[field[-1]] += int(value or 0)
    finished = totals["c"] + totals["f"]
    elapsed_min = window_min - 1 + (now_ms() % 60_000) / 60_000
    return QueueMetrics(
        throughput=round(finished / elapsed_min, 3) if elapsed_min else 0.0,
        error_rate=round(totals["f"] / finished, 4) if finished else 0.0,
        average_processing_time=round(totals["t"] / finished, 3) if finished else 0.0,
    ), finished


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
