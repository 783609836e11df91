"""Read models: what the coordinator reports about queues, workers, schedules and health."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from coordinator.models.options import QueueConfig, RateLimit


class HealthStatus(str, Enum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


class QueueInfo(BaseModel):
    """A queue as created: its config, whether it is paused, when it was created."""

    name: str
    celery_queue: str
    config: QueueConfig
    paused: bool
    created_at: datetime


class QueueCounts(BaseModel):
    waiting: int = 0
    active: int = 0
    delayed: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    waiting_children: int = 0
    """Jobs waiting for their children or dependencies (flows, DAGs, batch callbacks)."""


class QueueMetrics(BaseModel):
    throughput: float = 0.0
    """Jobs finished per minute over the recent window."""
    error_rate: float = 0.0
    """Failed / finished over the recent window, 0..1."""
    average_processing_time: float = 0.0
    """ms per finished job over the recent window."""


class QueueHealth(BaseModel):
    status: HealthStatus
    reasons: list[str] = []
    metrics: QueueMetrics = QueueMetrics()


class GroupStatus(BaseModel):
    """One group of a queue: its waiting jobs (not yet released to the broker), the leases it
    holds (with a concurrency limit), whether it is paused, and how long its oldest job has waited."""

    name: str
    waiting: int
    active: int = 0
    paused: bool = False
    oldest_waiting_s: float | None = None


class LimiterStatus(BaseModel):
    """A concurrency cap (a named limiter, or a queue's ``concurrency``): its maximum and the
    leases held now."""

    name: str
    max_concurrent: int
    active: int


class QueueStatus(BaseModel):
    name: str
    paused: bool
    counts: QueueCounts
    health: QueueHealth
    workers: int
    """Live workers consuming this queue, on any host."""
    groups: list[GroupStatus] = []
    """The groups with the most waiting jobs (at most `coordinator.groups.GROUPS_SHOWN`), and paused ones among them."""
    group_count: int = 0
    """Groups with waiting jobs."""
    grouped_waiting: int = 0
    """Waiting jobs of every group, not yet released to the broker."""
    concurrency: LimiterStatus | None = None
    """The queue's cap (`QueueConfig.concurrency`) and its occupancy, when it has one."""
    capped: int = 0
    """Waiting jobs parked over a concurrency cap (the queue's or a named limiter's)."""
    deduplicated: int = 0
    """Enqueues since the queue began that added nothing because their dedup key was held (they
    returned the job that stands; docs/deduplication.md)."""


class WorkerState(str, Enum):
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    STOPPED = "stopped"
    CRASHED = "crashed"


class WorkerStatus(BaseModel):
    id: str
    queue: str
    node_name: str
    hostname: str
    pid: int | None
    state: WorkerState
    concurrency: int
    autoscale: tuple[int, int] | None = None
    limiter: RateLimit | None = None
    active_jobs: int = 0
    processed: int = 0
    failed: int = 0
    restarts: int = 0
    last_heartbeat: datetime | None = None
    started_at: datetime | None = None
    uptime_s: float = 0.0
    memory_rss_bytes: int | None = None
    log_file: str | None = None


#: What `register_worker` returns: the worker's status at the moment it began consuming.
ManagedWorker = WorkerStatus


class ScalingResult(BaseModel):
    previous: int
    current: int
    started: list[str] = []
    stopped: list[str] = []


class RecurringJob(BaseModel):
    """A recurring job's schedule. ``next_run`` is the first tick after the last run (in the past
    while no beat runs; None once ``limit`` or ``end_date`` is reached); ``last_run`` is the tick
    of the last run fired."""

    key: str
    queue: str
    name: str
    data: Any = None
    cron: str | None = None
    every: int | None = None
    tz: str = "UTC"
    limit: int | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None
    next_run: datetime | None = None
    last_run: datetime | None = None
    run_count: int = 0
    paused: bool = False
    """Paused with `pause_recurring_job`, or after ``pause_after_failures`` failed runs in a row."""
    overlap: str = "allow"
    misfire: str = "latest"
    consecutive_failures: int = 0


class HealthCheck(BaseModel):
    name: str
    status: HealthStatus
    detail: str = ""
    data: dict[str, Any] = {}


class Health(BaseModel):
    status: HealthStatus
    checks: list[HealthCheck] = []
    reasons: list[str] = []
    checked_at: datetime


# ----------------------------------------------------------------------------- observability


class MetricsPoint(BaseModel):
    """One minute of a queue's metrics: jobs finished in it and their processing time."""

    minute: datetime
    """Start of the minute (UTC)."""
    completed: int = 0
    failed: int = 0
    processing_time_ms: int = 0
    """Sum over the jobs finished in the minute."""
    average_processing_time: float = 0.0
    """ms per finished job in the minute (0 when none finished)."""


class HealthThresholds(BaseModel):
    """Limits past which `get_health` reports a queue, Redis or the workers as degraded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_backlog: int = Field(10_000, ge=0, description="waiting jobs of one queue")
    max_oldest_waiting_s: float = Field(300.0, ge=0, description="age of a queue's oldest waiting job")
    max_error_rate: float = Field(0.5, ge=0, le=1, description="failed / finished over the metrics window")
    min_finished_for_error_rate: int = Field(1, ge=1, description="finished jobs before the error rate counts")
    max_redis_latency_ms: float = Field(250.0, gt=0, description="PING round trip")
    max_heartbeat_age_s: float = Field(10.0, gt=0, description="a running managed worker's last heartbeat")
    require_persistence: bool = Field(True, description="report a Redis without AOF or RDB snapshots")
