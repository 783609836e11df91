"""WorkerManager: registers managed `celery worker` subprocesses for queues, and closes them."""

from __future__ import annotations

import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coordinator.errors import ConfigurationError, WorkerNotFoundError, WorkerStartError
from coordinator.models import WorkerOptions, WorkerState, WorkerStatus
from coordinator.workers import process
from coordinator.workers.spec import WorkerSpec, find_import_path, import_path

if TYPE_CHECKING:
    from coordinator.facade import JobQueueCoordinator

#: How long `register_worker` waits for a new worker to consume.
START_TIMEOUT_S = 30.0


@dataclass
class _Managed:
    spec: WorkerSpec
    process: subprocess.Popen[bytes]
    log_path: Path
    started_at: datetime
    state: WorkerState = WorkerState.STARTING
    restarts: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class WorkerManager:
    """Managed worker processes of one coordinator, by id and by queue."""

    def __init__(self, coord: JobQueueCoordinator, log_dir: Path | None = None) -> None:
        self.coord = coord
        self.log_dir = log_dir or Path(tempfile.gettempdir()) / f"jqc-{coord.settings.prefix}-workers"
        self._workers: dict[str, _Managed] = {}
        self._mutex = threading.RLock()

    def register_worker(self, queue: str, processor: Callable[..., Any] | None = None,
                        options: WorkerOptions | None = None, **fields: Any) -> WorkerStatus:
        """Start a `celery worker` for ``queue`` and return once it consumes."""
        self.coord.queues.get_queue(queue)
        merged = {**(options.model_dump(exclude_unset=True) if options else {}), **fields}
        opts = WorkerOptions(**merged)
        spec = self._spec(queue, processor, opts)
        managed = self._start(spec)
        return self._status(managed)

    def _spec(self, queue: str, processor: Callable[..., Any] | None, opts: WorkerOptions) -> WorkerSpec:
        handler = processor or self.coord.processors.get(queue)
        if handler is None and not self.coord.adopted_app:
            raise ConfigurationError(f"processor: no processor given or registered for queue {queue!r}")
        worker_id = f"{queue}-{uuid.uuid4().hex[:8]}"
        return WorkerSpec(
            settings=self.coord.settings, queue=queue, worker_id=worker_id,
            node_name=f"{self.coord.settings.prefix}-{worker_id}@{socket.gethostname()}",
            options=opts,
            processor=import_path(handler, "processor") if handler else None,
            app=find_import_path(self.coord.app, "app") if self.coord.adopted_app else None,
        )

    def _start(self, spec: WorkerSpec) -> _Managed:
        log_path = self.log_dir / f"{spec.worker_id}.log"
        managed = _Managed(spec, process.spawn(spec, log_path), log_path, datetime.now(timezone.utc))
        with self._mutex:
            self._workers[spec.worker_id] = managed
        self._wait_consuming(managed)
        return managed

    def _wait_consuming(self, managed: _Managed) -> None:
        """Wait for the worker's first heartbeat: it is written once the worker consumes."""
        key = self.coord.keys.worker(managed.spec.node_name)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if managed.process.poll() is not None:
                break
            if self.coord.registry.client.exists(key):
                managed.state = WorkerState.RUNNING
                return
            time.sleep(0.05)
        process.stop(managed.process, timeout=1)
        with self._mutex:
            self._workers.pop(managed.spec.worker_id, None)
        raise WorkerStartError(
            f"worker {managed.spec.worker_id} did not start consuming within {START_TIMEOUT_S:.0f} s "
            f"(exit code {managed.process.returncode}); log {managed.log_path}:\n"
            + process.log_tail(managed.log_path)
        )

    def close_worker(self, worker_id: str, timeout: float = 30) -> None:
        """Warm shutdown: running jobs finish (up to ``timeout`` s), then the process stops."""
        managed = self._get(worker_id)
        managed.state = WorkerState.STOPPING
        process.stop(managed.process, timeout)
        managed.state = WorkerState.STOPPED
        with self._mutex:
            self._workers.pop(worker_id, None)

    def get_worker(self, worker_id: str) -> WorkerStatus:
        return self._status(self._get(worker_id))

    def get_workers_by_queue(self, queue: str) -> list[WorkerStatus]:
        with self._mutex:
            managed = [m for m in self._workers.values() if m.spec.queue == queue]
        return [self._status(m) for m in managed]

    def get_all_worker_status(self) -> list[WorkerStatus]:
        with self._mutex:
            managed = list(self._workers.values())
        return [self._status(m) for m in managed]

    def shutdown(self, timeout: float = 30) -> None:
        """Close every managed worker, warm, in parallel."""
        with self._mutex:
            ids = list(self._workers)
        threads = [threading.Thread(target=self.close_worker, args=(worker_id, timeout)) for worker_id in ids]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _get(self, worker_id: str) -> _Managed:
        with self._mutex:
            managed = self._workers.get(worker_id)
        if managed is None:
            raise WorkerNotFoundError(worker_id)
        return managed

    def _status(self, managed: _Managed) -> WorkerStatus:
        spec = managed.spec
        alive = managed.process.poll() is None
        state = managed.state if alive or managed.state is WorkerState.STOPPED else WorkerState.CRASHED
        return WorkerStatus(
            id=spec.worker_id, queue=spec.queue, node_name=spec.node_name, hostname=socket.gethostname(),
            pid=managed.process.pid, state=state,
            concurrency=spec.options.concurrency or self.coord.settings.worker_concurrency,
            autoscale=spec.options.autoscale, limiter=spec.options.limiter, restarts=managed.restarts,
            started_at=managed.started_at,
            uptime_s=(datetime.now(timezone.utc) - managed.started_at).total_seconds(),
            log_file=str(managed.log_path),
        )
