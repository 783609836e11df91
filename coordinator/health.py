"""`get_health()`: Redis, its settings that lose jobs, managed workers and every queue, in a few
round trips, so a probe may call it every few seconds.

    unhealthy  Redis cannot be reached; a queue (not paused) has waiting jobs and no live worker
    degraded   Redis is slow, may evict keys or keeps nothing on disk, or a persistence write
               failed; a managed worker is not running (crashed, restarting) or its heartbeat
               is stale; a queue passes a threshold (backlog, oldest waiting job, error rate)
    healthy    none of the above

Every reason is listed. No output carries the Redis password (`settings.redact_url`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from coordinator.errors import ConfigurationError, RedisUnavailableError
from coordinator.keys import STATE_INDEXES
from coordinator.models import (
    Health,
    HealthCheck,
    HealthStatus,
    HealthThresholds,
    QueueCounts,
    QueueMetrics,
    WorkerState,
)
from coordinator.queues import WORKER_LIVE_MS, metrics_fields, metrics_from, queue_health
from coordinator.registry.registry import PROCESSING_BUCKETS_MS, now_ms
from coordinator.settings import redact_url

if TYPE_CHECKING:
    from coordinator.facade import JobQueueCoordinator

_ORDER = {HealthStatus.HEALTHY: 0, HealthStatus.DEGRADED: 1, HealthStatus.UNHEALTHY: 2}
#: Metrics-hash fields of the totals since the queue began (see `finish.lua`).
TOTAL_FIELDS = ["all:c", "all:f", "all:t", *(f"all:le:{b}" for b in PROCESSING_BUCKETS_MS), "all:le:inf"]


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
    totals: dict[str, int] = field(default_factory=dict)
    """``all:*`` fields of the metrics hash: completed, failed, ms and histogram buckets."""


def read_queue_snapshots(coord: JobQueueCoordinator) -> list[QueueSnapshot]:
    """Every queue's counts, oldest waiting job, metrics and live workers, in two round trips."""
    client = coord.registry.client
    names = coord.registry.queue_names()
    window = metrics_fields()
    pipe = client.pipeline(transaction=False)
    pipe.zrangebyscore(coord.keys.workers, now_ms() - WORKER_LIVE_MS, "+inf")
    for name in names:
        qk = coord.keys.for_queue(name)
        pipe.hget(qk.meta, "paused")
        for state in STATE_INDEXES:
            pipe.zcard(qk.index(state))
        pipe.zrange(qk.index("waiting"), 0, 0, withscores=True)
        pipe.hmget(qk.metrics, window + TOTAL_FIELDS)
    replies = pipe.execute()
    live = _live_workers_by_queue(coord, replies[0])
    per = 3 + len(STATE_INDEXES)
    now = now_ms()
    snapshots = []
    for i, name in enumerate(names):
        paused, *rest = replies[1 + i * per : 1 + (i + 1) * per]
        counts = QueueCounts(**dict(zip(STATE_INDEXES, rest[: len(STATE_INDEXES)])))
        oldest, values = rest[len(STATE_INDEXES):]
        metrics, finished = metrics_from(window, values[: len(window)])
        snapshots.append(QueueSnapshot(
            name=name, paused=paused == "1", counts=counts,
            oldest_waiting_s=max(0.0, (now - oldest[0][1]) / 1000) if oldest else None,
            metrics=metrics, finished_in_window=finished, live_workers=live.get(name, 0),
            totals={f: int(v or 0) for f, v in zip(TOTAL_FIELDS, values[len(window):])},
        ))
    return snapshots


def _live_workers_by_queue(coord: JobQueueCoordinator, nodes: list[str]) -> dict[str, int]:
    if not nodes:
        return {}
    pipe = coord.registry.client.pipeline(transaction=False)
    for node in nodes:
        pipe.hget(coord.keys.worker(node), "queues")
    live: dict[str, int] = {}
    for queues in pipe.execute():
        for queue in (queues or "").split(","):
            if queue:
                live[queue] = live.get(queue, 0) + 1
    return live


def check_health(coord: JobQueueCoordinator, thresholds: HealthThresholds | None = None) -> Health:
    """Check Redis, its settings, the managed workers and every queue; see the module docstring."""
    limits = thresholds or HealthThresholds()
    checks = [_check_redis(coord, limits)]
    if checks[0].status is not HealthStatus.UNHEALTHY:
        checks += _check_redis_settings(coord, limits)
    checks.append(_check_workers(coord, limits, reachable=checks[0].status is not HealthStatus.UNHEALTHY))
    if checks[0].status is not HealthStatus.UNHEALTHY:
        try:
            checks += [_queue_check(snap, limits) for snap in read_queue_snapshots(coord)]
        except RedisUnavailableError as exc:
            checks.append(HealthCheck(name="queues", status=HealthStatus.UNHEALTHY,
                                      detail=f"could not read the queues: {_safe(coord, exc)}"))
    reasons = [f"{c.name}: {c.detail}" for c in checks if c.status is not HealthStatus.HEALTHY]
    return Health(status=worst([c.status for c in checks]), checks=checks, reasons=reasons,
                  checked_at=datetime.now(timezone.utc))


def _safe(coord: JobQueueCoordinator, exc: BaseException) -> str:
    """An error message with any form of the Redis URL or password removed."""
    text = str(exc)
    for url in (coord.settings.url, coord.settings.broker_url):
        if url:
            text = text.replace(url, redact_url(url))
            password = urlsplit(url).password
            if password:
                text = text.replace(password, "***").replace(unquote(password), "***")
    return text


def _check_redis(coord: JobQueueCoordinator, limits: HealthThresholds) -> HealthCheck:
    url = redact_url(coord.settings.url)
    started = time.perf_counter()
    try:
        coord.redis.ping()
    except (RedisUnavailableError, ConfigurationError, OSError) as exc:
        return HealthCheck(name="redis", status=HealthStatus.UNHEALTHY, data={"url": url},
                           detail=f"cannot reach Redis at {url}: {_safe(coord, exc)}")
    latency_ms = round((time.perf_counter() - started) * 1000, 3)
    data = {"url": url, "latency_ms": latency_ms}
    if latency_ms > limits.max_redis_latency_ms:
        return HealthCheck(name="redis", status=HealthStatus.DEGRADED, data=data,
                           detail=f"PING took {latency_ms:.0f} ms, over {limits.max_redis_latency_ms:g} ms")
    return HealthCheck(name="redis", status=HealthStatus.HEALTHY, data=data, detail=f"PING {latency_ms:.1f} ms")


def redis_settings_warnings(coord: JobQueueCoordinator) -> list[str]:
    """What in the Redis configuration can lose jobs (eviction, no persistence), for a worker to
    warn about when it starts."""
    return [f"{c.name}: {c.detail}" for c in _check_redis_settings(coord, HealthThresholds())
            if c.status is not HealthStatus.HEALTHY and c.name != "registry"]


def _check_redis_settings(coord: JobQueueCoordinator, limits: HealthThresholds) -> list[HealthCheck]:
    """maxmemory-policy and persistence: INFO works for any user; CONFIG GET may be refused."""
    pipe = coord.redis.pipeline(transaction=False)
    pipe.info("persistence")
    pipe.info("memory")
    pipe.config_get("save")
    pipe.get(coord.keys.epoch)
    try:
        persistence, memory, save, epoch = pipe.execute(raise_on_error=False)
    except RedisUnavailableError as exc:
        return [HealthCheck(name="redis_settings", status=HealthStatus.UNHEALTHY, detail=_safe(coord, exc))]
    checks = [_registry_check(coord, epoch)]
    policy = memory.get("maxmemory_policy", "unknown") if isinstance(memory, dict) else "unknown"
    maxmemory = memory.get("maxmemory", 0) if isinstance(memory, dict) else 0
    eviction = {"maxmemory_policy": policy, "maxmemory": maxmemory}
    if policy not in ("noeviction", "unknown"):
        checks.append(HealthCheck(
            name="redis_eviction", status=HealthStatus.DEGRADED, data=eviction,
            detail=f"maxmemory-policy is {policy}: under memory pressure Redis deletes keys, and with "
                   "them jobs; set it to noeviction",
        ))
    else:
        checks.append(HealthCheck(name="redis_eviction", status=HealthStatus.HEALTHY, data=eviction,
                                  detail=f"maxmemory-policy {policy}"))
    checks.append(_persistence_check(persistence, save, limits))
    return checks


def _registry_check(coord: JobQueueCoordinator, epoch: Any) -> HealthCheck:
    """Unhealthy once the registry's epoch marker has vanished or changed under this process."""
    if isinstance(epoch, Exception) or not coord.registry.epoch_lost(epoch):
        return HealthCheck(name="registry", status=HealthStatus.HEALTHY, detail="registry intact")
    return HealthCheck(
        name="registry", status=HealthStatus.UNHEALTHY, data={"epoch": epoch},
        detail="the registry was lost (its epoch marker is gone or new): Redis restarted without "
               "persistence, was flushed or evicted keys; jobs recorded before are gone",
    )


def _persistence_check(persistence: Any, save: Any, limits: HealthThresholds) -> HealthCheck:
    info = persistence if isinstance(persistence, dict) else {}
    aof = str(info.get("aof_enabled", "0")) == "1"
    save_rule = save.get("save") if isinstance(save, dict) else None
    data: dict[str, Any] = {"appendonly": aof, "save": save_rule}
    failing = [name for name in ("rdb_last_bgsave_status", "aof_last_write_status", "aof_last_bgrewrite_status")
               if info.get(name, "ok") != "ok"]
    if failing:
        return HealthCheck(name="redis_persistence", status=HealthStatus.DEGRADED, data=data,
                           detail=f"persistence is failing ({', '.join(failing)} not ok)")
    if aof:
        return HealthCheck(name="redis_persistence", status=HealthStatus.HEALTHY, data=data, detail="AOF on")
    if save_rule:
        return HealthCheck(name="redis_persistence", status=HealthStatus.HEALTHY, data=data,
                           detail=f"RDB snapshots only (save {save_rule}): a crash loses the jobs since the last one")
    if save_rule is None:
        return HealthCheck(name="redis_persistence", status=HealthStatus.HEALTHY, data=data,
                           detail="AOF off; CONFIG GET save refused, RDB snapshots unknown")
    if not limits.require_persistence:
        return HealthCheck(name="redis_persistence", status=HealthStatus.HEALTHY, data=data,
                           detail="no persistence (allowed by the thresholds)")
    return HealthCheck(name="redis_persistence", status=HealthStatus.DEGRADED, data=data,
                       detail="no persistence (appendonly no, save \"\"): a Redis restart loses every job")


def _check_workers(coord: JobQueueCoordinator, limits: HealthThresholds, reachable: bool) -> HealthCheck:
    """This coordinator's managed workers: running with a fresh heartbeat, against those expected."""
    workers = coord.workers.get_all_worker_status()
    stale: dict[str, int | None] = {}
    if reachable and workers:
        pipe = coord.registry.client.pipeline(transaction=False)
        for worker in workers:
            pipe.hget(coord.keys.worker(worker.node_name), "heartbeat")
        try:
            beats = pipe.execute()
        except RedisUnavailableError:
            beats = [None] * len(workers)
        now = now_ms()
        stale = {w.id: (now - int(b)) if b else None for w, b in zip(workers, beats)}
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
