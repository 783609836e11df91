"""WorkerManager: managed `celery worker` subprocesses per queue: start, scale, pause, close.

    WorkerManager
    ├── ManagedProcess  (managed.py)     one worker id, its process, its lifecycle state
    ├── Supervisor      (supervisor.py)  restarts workers that died unexpectedly
    ├── Autoscaler      (autoscaler.py)  applies queue-depth policies with scale_workers
    └── ShutdownSignals (signals.py)     SIGTERM / SIGINT: warm close, a second one kills
"""

from __future__ import annotations

import logging
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

from celery import Celery

from coordinator.errors import InvalidArgumentError, RedisUnavailableError, WorkerNotFoundError, WorkerStartError
from coordinator.heartbeats import PAUSED, RUNNING, HeartbeatStore
from coordinator.models import AutoscalePolicy, RateLimit, ScalingResult, WorkerOptions, WorkerState, WorkerStatus
from coordinator.queues import QueueManager
from coordinator.registry import Registry
from coordinator.settings import Settings
from coordinator.workers import process
from coordinator.workers.autoscaler import Autoscaler
from coordinator.workers.managed import ManagedProcess, build_status
from coordinator.workers.signals import ShutdownSignals
from coordinator.workers.spec import WorkerSpec, find_import_path, import_path
from coordinator.workers.supervisor import Supervisor

log = logging.getLogger(__name__)

#: How long `register_worker` waits for a new worker to consume.
START_TIMEOUT_S = 30.0
#: How long `pause_worker` / `resume_worker` wait for the worker to confirm.
PAUSE_CONFIRM_S = 10.0
#: Default warm-shutdown timeout of workers stopped by `scale_workers`.
SCALE_DOWN_TIMEOUT_S = 30.0


class WorkerManager:
    """Managed worker processes of one coordinator, by id and by queue."""

    def __init__(self, settings: Settings, app: Celery, queues: QueueManager, registry: Registry,
                 heartbeats: HeartbeatStore, processors: Mapping[str, Callable[..., Any]], *,
                 adopted_app: bool = False, log_dir: Path | None = None) -> None:
        self.settings = settings
        self.app = app
        self.queues = queues
        self.registry = registry
        self.heartbeats = heartbeats
        self.processors = processors
        """The processors registered in this process (`@coord.processor`), by queue."""
        self.adopted_app = adopted_app
        self.log_dir = log_dir or Path(tempfile.gettempdir()) / f"jqc-{settings.prefix}-workers"
        self._workers: dict[str, ManagedProcess] = {}
        self._templates: dict[str, tuple[str | None, WorkerOptions]] = {}
        self._scale_locks: dict[str, threading.Lock] = {}
        self.mutex = threading.RLock()
        self.supervisor = Supervisor(self)
        self.autoscaler = Autoscaler(self)
        self.signals = ShutdownSignals(self)

    # ----------------------------------------------------------------------------- start

    def register_worker(self, queue: str, processor: Callable[..., Any] | None = None,
                        options: WorkerOptions | None = None, **fields: Any) -> WorkerStatus:
        """Start a `celery worker` for ``queue`` and return once it consumes."""
        self.queues.get_queue(queue)
        merged = {**(options.model_dump(exclude_unset=True) if options else {}), **fields}
        opts = WorkerOptions(**merged)
        processor_path = self._processor_path(queue, processor)
        self._apply_limiter(queue, opts.limiter)
        with self.mutex:
            self._templates[queue] = (processor_path, opts)
        return self._status(self._start(self._spec(queue, processor_path, opts)))

    def _processor_path(self, queue: str, processor: Callable[..., Any] | None) -> str | None:
        handler = processor or self.processors.get(queue)
        if handler is None and not self.adopted_app:
            raise InvalidArgumentError(f"processor: no processor given or registered for queue {queue!r}")
        return import_path(handler, "processor") if handler else None

    def _apply_limiter(self, queue: str, limiter: RateLimit | None) -> None:
        """A worker's limiter is its queue's global limit, as in BullMQ: set it on the queue."""
        if limiter is None:
            return
        config = self.queues.get_queue(queue).config
        if config.limiter == limiter:
            return
        if config.limiter is not None:
            raise InvalidArgumentError(
                f"limiter: queue {queue!r} already has the global limit {config.limiter!r}; a worker's "
                "limiter is its queue's global limit, change it with create_queue(..., limiter=...)"
            )
        self.queues.create_queue(config.model_copy(update={"limiter": limiter}))

    def _spec(self, queue: str, processor_path: str | None, opts: WorkerOptions) -> WorkerSpec:
        worker_id = f"{queue}-{uuid.uuid4().hex[:8]}"
        return WorkerSpec(
            settings=self.settings, queue=queue, worker_id=worker_id,
            node_name=f"{self.settings.prefix}-{worker_id}@{socket.gethostname()}",
            options=opts, processor=processor_path,
            app=find_import_path(self.app, "app") if self.adopted_app else None,
        )

    def _start(self, spec: WorkerSpec) -> ManagedProcess:
        self.signals.install()
        log_path = self.log_dir / f"{spec.worker_id}.log"
        managed = ManagedProcess(spec, process.spawn(spec, log_path), log_path, datetime.now(timezone.utc))
        with self.mutex:
            self._workers[spec.worker_id] = managed
        if not self.wait_consuming(managed):
            process.stop(managed.process, timeout=1)
            with self.mutex:
                self._workers.pop(spec.worker_id, None)
            raise WorkerStartError(
                f"worker {spec.worker_id} did not start consuming within {START_TIMEOUT_S:.0f} s "
                f"(exit code {managed.process.returncode}); log {log_path}:\n" + process.log_tail(log_path)
            )
        self.supervisor.start()
        return managed

    def wait_consuming(self, managed: ManagedProcess) -> bool:
        """Wait for the first heartbeat of the worker's current process: written once it consumes.
        Redis away meanwhile (restarting, loading) is waited out like a slow start, never raised:
        a supervisor's restart that raised here would leave the worker ``starting`` for ever."""
        node = managed.spec.node_name
        proc = managed.process
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                pid = self.heartbeats.field(node, "pid")
            except RedisUnavailableError:
                pid = None
            if pid == str(proc.pid):
                with self.mutex:
                    if managed.state is WorkerState.STARTING and managed.process is proc:
                        managed.state = WorkerState.RUNNING
                        managed.running_since = time.monotonic()
                return True
            time.sleep(0.05)
        return False

    # ----------------------------------------------------------------------------- scale

    def scale_workers(self, queue: str, target_count: int, timeout: float = SCALE_DOWN_TIMEOUT_S) -> ScalingResult:
        """Start or warm-stop workers of ``queue`` until it has ``target_count``.

        Returns once new workers consume and stopped ones have left `get_workers_by_queue`.
        New workers copy the processor and options of the queue's last registered worker.
        """
        if target_count < 0:
            raise InvalidArgumentError(f"target_count: must be >= 0, got {target_count}")
        self.queues.get_queue(queue)
        with self._scale_lock(queue):
            for worker in self.members(queue, include_gave_up=True):
                if worker.gave_up:  # dead for good: replaced, not counted
                    self.close_worker(worker.spec.worker_id, timeout=1)
            members = self.members(queue)
            previous = len(members)
            started: list[str] = []
            stopped: list[str] = []
            if target_count > previous:
                started = self._start_many(queue, target_count - previous)
            elif target_count < previous:
                victims = sorted(members, key=self._victim_rank)[: previous - target_count]
                stopped = [m.spec.worker_id for m in victims]
                self._run_parallel([partial(self.close_worker, w, timeout) for w in stopped])
            current = len(self.members(queue))
        log.info("scaled queue %s from %d to %d workers", queue, previous, current)
        return ScalingResult(previous=previous, current=current, started=started, stopped=stopped)

    def _scale_lock(self, queue: str) -> threading.Lock:
        with self.mutex:
            return self._scale_locks.setdefault(queue, threading.Lock())

    def members(self, queue: str, include_gave_up: bool = False) -> list[ManagedProcess]:
        with self.mutex:
            return [m for m in self._workers.values()
                    if m.spec.queue == queue and not m.stopping and (include_gave_up or not m.gave_up)]

    def _victim_rank(self, managed: ManagedProcess) -> tuple[int, int, float]:
        """Stop crashed workers first, then paused, then the least busy, newest first."""
        status = self._status(managed)
        order = {WorkerState.CRASHED: 0, WorkerState.STARTING: 1, WorkerState.PAUSED: 2}
        return order.get(status.state, 3), status.active_jobs, -managed.started_at.timestamp()

    def _start_many(self, queue: str, count: int) -> list[str]:
        with self.mutex:
            template = self._templates.get(queue)
        if template is None:
            template = (self._processor_path(queue, None), WorkerOptions())
        processor_path, opts = template
        specs = [self._spec(queue, processor_path, opts) for _ in range(count)]
        errors: list[BaseException] = []

        def start(spec: WorkerSpec) -> None:
            try:
                self._start(spec)
            except BaseException as exc:  # reported after every start has ended
                errors.append(exc)

        self._run_parallel([partial(start, s) for s in specs])
        if errors:
            raise errors[0]
        return [spec.worker_id for spec in specs]

    @staticmethod
    def _run_parallel(calls: list[Callable[[], Any]]) -> None:
        threads = [threading.Thread(target=call, daemon=True) for call in calls]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def set_template(self, queue: str, processor: Callable[..., Any] | None, options: WorkerOptions | None) -> None:
        """Processor and options of the workers `scale_workers` starts for ``queue``; what is
        not given is kept from the current template."""
        with self.mutex:
            current = self._templates.get(queue)
        if processor is None and current is not None:
            processor_path = current[0]
        else:
            processor_path = self._processor_path(queue, processor)
        opts = options or (current[1] if current else WorkerOptions())
        with self.mutex:
            self._templates[queue] = (processor_path, opts)

    # ----------------------------------------------------------------------------- autoscale

    def set_autoscale_policy(self, queue: str, policy: AutoscalePolicy | None,
                             processor: Callable[..., Any] | None = None) -> None:
        """Scale ``queue``'s workers by its depth under ``policy``; None removes the policy."""
        self.queues.get_queue(queue)
        if policy is not None:
            self.set_template(queue, processor, policy.worker_options)
        self.autoscaler.set_policy(queue, policy)

    def get_autoscale_policy(self, queue: str) -> AutoscalePolicy | None:
        return self.autoscaler.get_policy(queue)

    # ----------------------------------------------------------------------------- pause

    def pause_worker(self, worker_id: str) -> None:
        """That worker stops taking jobs (its running jobs finish); the queue's others go on."""
        self._set_paused(worker_id, True)

    def resume_worker(self, worker_id: str) -> None:
        """That worker takes jobs again."""
        self._set_paused(worker_id, False)

    def _set_paused(self, worker_id: str, paused: bool) -> None:
        """Set the worker's pause flag, then wait (bounded) for its heartbeat to confirm.

        The worker polls the flag from its maintenance thread, so the pause holds across
        restarts and whatever control messages were lost; a worker busy with a job in the solo
        pool confirms when the job ends.
        """
        managed = self._get(worker_id)
        node = managed.spec.node_name
        self.heartbeats.set_pause_flag(node, paused)
        want = PAUSED if paused else RUNNING
        deadline = time.monotonic() + PAUSE_CONFIRM_S
        while time.monotonic() < deadline and managed.alive and not managed.stopping:
            if self.heartbeats.field(node, "state") == want:
                return
            time.sleep(0.05)
        log.warning("worker %s did not confirm %s within %.0f s; the flag stays set", worker_id, want,
                    PAUSE_CONFIRM_S)

    # ----------------------------------------------------------------------------- stop

    def close_worker(self, worker_id: str, timeout: float = 30) -> None:
        """Warm shutdown: running jobs finish (up to ``timeout`` s), then the process stops."""
        managed = self._get(worker_id)
        with self.mutex:
            managed.state = WorkerState.STOPPING
        process.stop(managed.process, timeout)
        self._forget(managed)

    def kill_all(self) -> None:
        """Stop every managed worker at once (SIGKILL of each process group); their running
        jobs go back to waiting through stalled-job recovery."""
        self.supervisor.stop()
        self.autoscaler.stop()
        with self.mutex:
            workers = list(self._workers.values())
            for managed in workers:
                managed.state = WorkerState.STOPPING
        for managed in workers:
            process.kill_group(managed.process)
        for managed in workers:
            try:
                managed.process.wait(10)
            except Exception:
                log.warning("worker %s did not exit after SIGKILL", managed.spec.worker_id)
            self._forget(managed)

    def _forget(self, managed: ManagedProcess) -> None:
        with self.mutex:
            managed.state = WorkerState.STOPPED
            if self._workers.get(managed.spec.worker_id) is managed:
                del self._workers[managed.spec.worker_id]
        # a killed worker could not remove its heartbeat
        self.heartbeats.forget(managed.spec.node_name, remove_record=managed.process.poll() is not None)

    def shutdown(self, timeout: float = 30) -> None:
        """Stop the autoscaler and supervisor, then close every managed worker, warm, in parallel."""
        self.autoscaler.stop()
        self.supervisor.stop()
        with self.mutex:
            ids = list(self._workers)
        self._run_parallel([partial(self._close_quietly, w, timeout) for w in ids])
        self.signals.uninstall()

    def _close_quietly(self, worker_id: str, timeout: float) -> None:
        try:
            self.close_worker(worker_id, timeout)
        except WorkerNotFoundError:
            pass

    # ----------------------------------------------------------------------------- status

    def get_worker(self, worker_id: str) -> WorkerStatus:
        return self._status(self._get(worker_id))

    def get_workers_by_queue(self, queue: str) -> list[WorkerStatus]:
        return [self._status(m) for m in self.managed() if m.spec.queue == queue]

    def get_all_worker_status(self) -> list[WorkerStatus]:
        return [self._status(m) for m in self.managed()]

    def managed(self) -> list[ManagedProcess]:
        with self.mutex:
            return list(self._workers.values())

    def _get(self, worker_id: str) -> ManagedProcess:
        with self.mutex:
            managed = self._workers.get(worker_id)
        if managed is None:
            raise WorkerNotFoundError(worker_id)
        return managed

    def heartbeat(self, managed: ManagedProcess) -> dict[str, str]:
        return self.heartbeats.read(managed.spec.node_name)

    def _status(self, managed: ManagedProcess) -> WorkerStatus:
        return build_status(managed, self.heartbeat(managed), self.settings)
