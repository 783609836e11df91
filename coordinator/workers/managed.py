"""One managed worker as its manager holds it, and its `WorkerStatus` read from the heartbeat."""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from coordinator.models import WorkerState, WorkerStatus
from coordinator.registry.codec import from_ms
from coordinator.settings import Settings
from coordinator.workers.spec import WorkerSpec


@dataclass
class ManagedProcess:
    """A `celery worker` subprocess under one stable worker id; restarts replace ``process``."""

    spec: WorkerSpec
    process: subprocess.Popen[bytes]
    log_path: Path
    started_at: datetime
    state: WorkerState = WorkerState.STARTING
    restarts: int = 0
    """Restarts by the supervisor since registration."""
    crashes_in_row: int = 0
    """Deaths since the worker last ran stably; drives the back-off and the restart limit."""
    next_restart_at: float = 0.0
    """monotonic time of the next restart attempt while crashed."""
    exit_codes: list[int] = field(default_factory=list)
    gave_up: bool = False
    """The restart limit was reached: the worker stays crashed until closed or scaled away."""
    running_since: float = 0.0
    """monotonic time the current process began consuming."""
    last_beat_seen: float = 0.0
    """monotonic time the supervisor last saw a fresh heartbeat."""
    progress_mark: tuple[float, int] = (0.0, 0)
    """(monotonic time, processed count) when the worker was last seen busy or making progress."""

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    @property
    def stopping(self) -> bool:
        return self.state in (WorkerState.STOPPING, WorkerState.STOPPED)


def _int(value: str | None) -> int | None:
    return None if value is None or value == "" else int(value)


def build_status(managed: ManagedProcess, heartbeat: dict[str, str], settings: Settings) -> WorkerStatus:
    """The worker's status: lifecycle from the manager, everything live from its heartbeat hash."""
    spec = managed.spec
    state = managed.state
    if state is WorkerState.RUNNING and not managed.alive:
        state = WorkerState.CRASHED
    elif state is WorkerState.RUNNING and heartbeat.get("state") == "paused":
        state = WorkerState.PAUSED
    now = datetime.now(timezone.utc)
    started = from_ms(heartbeat.get("started")) or managed.started_at
    live = state in (WorkerState.RUNNING, WorkerState.PAUSED, WorkerState.STOPPING)
    options = spec.options
    autoscale = options.autoscale if options.pool == "prefork" else None
    if heartbeat.get("autoscale_max"):
        autoscale = (int(heartbeat["autoscale_max"]), int(heartbeat["autoscale_min"]))
    configured = autoscale[0] if autoscale else (options.concurrency or settings.worker_concurrency)
    if options.pool == "solo":
        configured = 1
    return WorkerStatus(
        id=spec.worker_id, queue=spec.queue, node_name=spec.node_name,
        hostname=heartbeat.get("host") or socket.gethostname(),
        pid=managed.process.pid if managed.alive else None, state=state,
        concurrency=_int(heartbeat.get("concurrency")) or configured, autoscale=autoscale,
        limiter=options.limiter,
        active_jobs=(_int(heartbeat.get("active")) or 0) if live else 0,
        processed=_int(heartbeat.get("processed")) or 0, failed=_int(heartbeat.get("failed")) or 0,
        restarts=managed.restarts, last_heartbeat=from_ms(heartbeat.get("heartbeat")),
        started_at=started, uptime_s=round((now - started).total_seconds(), 3) if live else 0.0,
        memory_rss_bytes=_int(heartbeat.get("rss")) if live else None, log_file=str(managed.log_path),
    )
