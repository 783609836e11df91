"""JobQueueCoordinator: the one object users hold; it composes the managers and the registry.

    JobQueueCoordinator
    ├── QueueManager     (queues.py)         queues: create, pause, resume, delete, status
    ├── JobScheduler     (scheduler.py)      jobs: enqueue, schedule, read, retry, cancel, prioritise
    ├── WorkerManager    (workers/)          managed `celery worker` processes
    ├── RecurringManager (recurring/)        recurring jobs: redbeat entries fired once per tick
    ├── HealthChecker    (health.py)         get_health()
    ├── JobRunner        (runtime/task.py)   the Celery task behind each processor, in the worker
    ├── HeartbeatStore   (heartbeats.py)     worker heartbeat records
    └── Registry         (registry/)         job records and state moves in Redis (Lua)

Each part is handed the collaborators it uses (a Registry, Settings, the HeartbeatStore, the
Celery app); none of them imports this module (tests/test_architecture.py checks it).
"""

from __future__ import annotations

import inspect
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any

from celery import Celery, Signature

from coordinator.broker import OutboxRelay
from coordinator.celery_config import build_app
from coordinator.connection import connect
from coordinator.errors import InvalidArgumentError
from coordinator.events import EventListener, iter_events
from coordinator.flows.batch import Batch, cancel_batch, open_batch, read_batch
from coordinator.flows.canvas import CanvasRun, CanvasWriter
from coordinator.flows.handoff import HandOff
from coordinator.flows.models import BatchStatus, FlowJob, FlowNode
from coordinator.flows.producer import FlowProducer
from coordinator.groups import GroupManager
from coordinator.health import HealthChecker, QueueSnapshot
from coordinator.heartbeats import HeartbeatStore
from coordinator.keys import CoordinatorKeys
from coordinator.models import (
    AutoscalePolicy,
    BulkJob,
    Event,
    EventName,
    GroupConfig,
    Health,
    HealthThresholds,
    Job,
    JobOptions,
    JobState,
    LimiterStatus,
    MetricsPoint,
    QueueConfig,
    QueueInfo,
    QueueStatus,
    RecurringJob,
    RecurringJobOptions,
    ScalingResult,
    ScheduleOptions,
    WorkerAction,
    WorkerOptions,
    WorkerStatus,
)
from coordinator.queues import QueueManager
from coordinator.recurring import RecurringManager
from coordinator.registry import Registry
from coordinator.registry.flows import FlowRegistry
from coordinator.runtime.adopted import AdoptedTasks
from coordinator.runtime.beat_scheduler import configure_beat
from coordinator.runtime.locks import LockKeeper
from coordinator.runtime.maintenance import WorkerParts, maintenance_step
from coordinator.runtime.task import JobRunner, Processor, register_processor_task
from coordinator.scheduler import JobScheduler
from coordinator.settings import BuiltFromSettings, Settings
from coordinator.validation import check_queue_name
from coordinator.workers import WorkerManager

if TYPE_CHECKING:
    from coordinator.runtime.async_runner import AsyncRunner


class JobQueueCoordinator(BuiltFromSettings):
    """One typed API over Celery and Redis: queues, jobs, workers, recurring jobs.

    Building one has no side effects beyond creating objects: no connection is opened until the
    first call, and the Celery app is not made the current app.
    """

    def _init(self, settings: Settings, app: Celery | None) -> None:
        self.settings = settings
        """The coordinator's settings (read-only)."""
        self._keys = CoordinatorKeys(settings.prefix)
        self._redis = connect(settings)
        self._registry = Registry(self._redis, settings.prefix, settings.events_max_len,
                                  finish_retry_s=settings.lock_duration_ms / 1000,
                                  outbox=not settings.broker_is_redis)
        self._registry.ops.lease_ms = settings.lock_duration_ms
        self._heartbeats = HeartbeatStore(self._redis, self._keys)
        self._groups = GroupManager(self._registry)
        self._adopted_app = app is not None
        self.app = build_app(settings, app)
        """The `celery.Celery` app: the one given, or one built from the settings."""
        self._processors: dict[str, Processor] = {}
        self._queues = QueueManager(self._registry, settings, self._heartbeats)
        if self._registry.outbox:
            self._registry.after_dispatch = OutboxRelay(self.app, self._registry).flush
        self._jobs = JobScheduler(self._registry, self._queues, settings, self.app, self._default_job_name)
        flow_registry = FlowRegistry(self._registry)
        self._flows = FlowProducer(self._registry, flow_registry, self._jobs, HandOff(flow_registry))
        self._registry.on_handoff = self._flows.handoff.apply_written
        self.app.steps["consumer"].add(maintenance_step(WorkerParts(
            self._registry, settings, self._queues.cached_config, self._heartbeats, self._processors,
            self._flows.handoff, self._existing_async_runner)))
        self._workers = WorkerManager(settings, self.app, self._queues, self._registry, self._heartbeats,
                                      self._processors, adopted_app=self._adopted_app)
        self._recurring = RecurringManager(self._redis, self._keys, self._queues, self._jobs, settings)
        configure_beat(self.app, settings, self._recurring.fire)
        self._runner = JobRunner(self._registry, settings, self._queues.reads, self._lock_keeper(), self._flows)
        self._async_runner: AsyncRunner | None = None
        self._health = HealthChecker(self._registry, self._heartbeats, settings, self._workers.get_all_worker_status)
        self._mutex = threading.Lock()
        self._adopted: AdoptedTasks | None = None
        if self._adopted_app:
            self._adopted = AdoptedTasks(
                self.app, self._keys, not settings.broker_is_redis, self.enqueue_job,
                lambda queue, handler: register_processor_task(
                    self.app, self._keys.task_name(queue), self._runner, handler, self.async_runner),
                self.processors,
            )
            self._adopted.install()
        self._event_listener: EventListener | None = None

    def _lock_keeper(self) -> LockKeeper:
        """The keeper of running jobs' locks, cancel flags and timeouts (`runtime.locks`)."""
        settings, registry = self.settings, self._registry
        return LockKeeper(
            registry, settings.lock_duration_ms, self._heartbeats, settings.cancel_check_ms,
            settings.cancel_grace_ms,
            terminate=lambda a: self.app.control.revoke(a.task_id, terminate=True, signal="SIGTERM"),
            on_unresponsive=lambda a: registry.emit_worker_event(
                a.queue, WorkerAction.UNRESPONSIVE_JOB, a.worker, job_id=a.job_id, reason=a.cancel_reason),
        )

    # ----------------------------------------------------------------------------- processors

    def processor(self, queue: str) -> Callable[[Processor], Processor]:
        """Decorator: register the queue's one handler. Returns the function unchanged."""
        check_queue_name(queue)

        def register(handler: Processor) -> Processor:
            existing = self._processors.get(queue)
            if existing is not None and getattr(existing, "__wrapped__", existing) is not handler:
                raise InvalidArgumentError(f"processor: queue {queue!r} already has processor {existing.__name__}")
            if existing is None:
                runs = handler
                if self._adopted is not None and inspect.iscoroutinefunction(handler):
                    runs = self._adopted.async_processor(queue, handler)  # adopted tasks refused
                elif self._adopted is not None:  # adopted tasks too
                    self._adopted.serve(queue, handler)
                if self._adopted is None or runs is not handler:
                    register_processor_task(self.app, self._keys.task_name(queue), self._runner, runs,
                                            self.async_runner)
                self._processors[queue] = runs
            return handler

        return register

    def async_runner(self, concurrency: int | None = None) -> AsyncRunner:
        """This process's event loop for ``async def`` processors, made on first use (per process)
        with ``concurrency`` job slots (default WORKER_CONCURRENCY); a worker process sets it."""
        from coordinator.runtime.async_runner import AsyncRunner

        with self._mutex:
            if self._async_runner is None or self._async_runner.pid != os.getpid():
                self._async_runner = AsyncRunner(self._runner, self.settings,
                                                 concurrency or self.settings.worker_concurrency)
            return self._async_runner

    def _existing_async_runner(self) -> AsyncRunner | None:
        runner = self._async_runner
        return runner if runner is not None and runner.pid == os.getpid() else None

    @property
    def processors(self) -> Mapping[str, Processor]:
        """The processors registered with `processor`, by queue (read-only)."""
        return MappingProxyType(self._processors)

    @property
    def job_runner(self) -> JobRunner:
        """The runner this coordinator's workers hand each dispatch to (claim script, processor,
        finish script); `coordinator.testing.run_jobs` runs jobs in the calling process through it."""
        return self._runner

    @property
    def adopted_app(self) -> bool:
        """True when the coordinator was built on an existing Celery app (``app=``)."""
        return self._adopted_app

    @property
    def adopted(self) -> AdoptedTasks | None:
        """The adopted app's tasks as jobs (`runtime.adopted`), or None without ``app=``."""
        return self._adopted

    @property
    def keys(self) -> CoordinatorKeys:
        """The names of every Redis key and Celery queue of this coordinator's prefix, for
        inspection tools and tests (read-only; the coordinator writes them, nothing else should)."""
        return self._keys

    def celery_queue(self, name: str) -> str:
        """The Celery queue that carries the jobs of coordinator queue ``name``; with an adopted
        app, its tasks routed there are served by this process's workers."""
        celery_queue = self._keys.for_queue(check_queue_name(name)).celery_queue
        if self._adopted is not None and name not in self._processors:
            self._adopted.serve(name)
        return celery_queue

    def _default_job_name(self, queue: str) -> str:
        """The processor's name: registered here, else as its workers recorded it, else the queue's."""
        handler = self._processors.get(queue)
        if handler is not None:
            return handler.__name__
        adopted = self._adopted.task_for_queue(queue) if self._adopted is not None else None
        return adopted or self._queues.processor_name(queue) or queue

    # ----------------------------------------------------------------------------- queues

    def create_queue(self, config: QueueConfig | str, **fields: Any) -> QueueInfo:
        """Create a queue (a `QueueConfig`, or a name plus its fields) or update its config;
        idempotent for the same config. Returns the stored `QueueInfo`."""
        return self._queues.create_queue(config, **fields)

    def get_queue(self, name: str) -> QueueInfo:
        """The queue's config and state; `QueueNotFoundError` if it was never created."""
        return self._queues.get_queue(name)

    def get_queue_names(self) -> list[str]:
        """The names of every queue of this prefix, sorted."""
        return self._queues.get_queue_names()

    def get_queue_status(self, name: str) -> QueueStatus:
        """The queue's counts per state, paused flag, live workers and health (with the recent
        throughput, error rate and mean processing time)."""
        return self._queues.get_queue_status(name)

    def pause_queue(self, name: str) -> None:
        """No worker, present or future, starts a new job of the queue until `resume_queue`;
        running jobs finish."""
        self._queues.pause_queue(name)

    def resume_queue(self, name: str) -> None:
        """Let the queue's jobs start again; the jobs held while it was paused are dispatched now."""
        self._queues.resume_queue(name)

    def delete_queue(self, name: str) -> None:
        """Remove the queue with its jobs, recurring jobs, events, metrics and keys."""
        self._recurring.remove_queue(name)
        self._queues.delete_queue(name)

    # ----------------------------------------------------------------------------- groups, limiters

    def set_group_config(self, queue: str, group: str, config: GroupConfig) -> None:
        """Set the limits of one group of a queue (`GroupConfig`: concurrency, limiter, max_size,
        weight), replacing its last config; the group's waiting jobs follow it at once."""
        self._groups.set_group_config(queue, group, config)

    def get_group_config(self, queue: str, group: str) -> GroupConfig:
        """A group's config (the defaults when none was set)."""
        return self._groups.get_group_config(queue, group)

    def pause_group(self, queue: str, group: str) -> None:
        """Start none of the group's waiting jobs until `resume_group`; other groups go on. Jobs
        of the group already handed to the broker (at most the queue's group window) still run."""
        self._groups.pause_group(queue, group)

    def resume_group(self, queue: str, group: str) -> None:
        """Serve a paused group again."""
        self._groups.resume_group(queue, group)

    def set_limiter(self, name: str, max_concurrent: int) -> None:
        """Create or change a named limiter: at most ``max_concurrent`` jobs that name it in
        ``limits=[...]`` run at once, whatever their queue, across every host."""
        self._groups.set_limiter(name, max_concurrent)

    def get_limiters(self) -> list[LimiterStatus]:
        """Every named limiter with the slots held now."""
        return self._groups.get_limiters()

    # ----------------------------------------------------------------------------- jobs

    def enqueue_job(self, queue: str, data: Any, options: JobOptions | None = None, *,
                    name: str | None = None, depends_on: list[Any] | None = None, **option_fields: Any) -> Job:
        """Add one job to ``queue`` and return it (``waiting``, or ``delayed`` with a delay).

        ``options`` and/or ``option_fields`` (`JobOptions` fields: priority, max_retries, backoff,
        delay, job_id, timeout, remove_on_complete, remove_on_fail, trace_id, expires, dedup, group,
        limits: docs/fairness.md); ``name`` labels the job (default: the queue's processor's name).
        An existing ``job_id`` returns that job and adds nothing; so does a ``dedup`` key another
        job holds (the returned job, the one that stands, has ``deduplicated`` set;
        docs/deduplication.md).
        `InvalidJobDataError` if ``data`` is not plain JSON or too large; `QueueNotFoundError` if
        the queue was never created. With ``depends_on`` (``(queue, job
        id)`` or ``(queue, job id, policy)`` items) it waits in waiting_children until those jobs
        are done (docs/flows.md)."""
        if depends_on is not None:
            return self._flows.enqueue_with_dependencies(queue, data, options, name, option_fields, depends_on)
        return self._jobs.enqueue_job(queue, data, options, name=name, **option_fields)

    def enqueue_bulk(self, queue: str, jobs: Iterable[BulkJob | dict[str, Any]]) -> list[Job]:
        """Add many jobs (`BulkJob`s or dicts with ``data``, ``name``, ``options``) in a few round
        trips; returns them in order."""
        return self._jobs.enqueue_bulk(queue, jobs)

    def schedule_job(self, queue: str, job_name: str, data: Any, options: ScheduleOptions | None = None,
                     **fields: Any) -> Job:
        """Add a job that waits until ``delay`` ms from now or ``run_at`` (`ScheduleOptions`), then
        runs like any other; it is ``delayed`` until then."""
        return self._jobs.schedule_job(queue, job_name, data, options, **fields)

    def get_job(self, queue: str, job_id: str) -> Job | None:
        """A snapshot of the job, or None if there is no such job (never raises for an unknown id)."""
        return self._jobs.get_job(queue, job_id)

    def get_jobs(self, queue: str, states: Iterable[JobState | str] | JobState | str, start: int = 0,
                 end: int = -1, asc: bool = False) -> list[Job]:
        """The queue's jobs in the given states, newest first (``asc``: oldest first); ``start`` and
        ``end`` are inclusive indexes as in Redis ranges (-1: the last)."""
        return self._jobs.get_jobs(queue, states, start, end, asc)

    def get_failed_jobs(self, queue: str, start: int = 0, end: int = -1) -> list[Job]:
        """The queue's failed jobs (the dead-letter list), newest first."""
        return self._jobs.get_failed_jobs(queue, start, end)

    def retry_job(self, queue: str, job_id: str) -> bool:
        """Run a failed or cancelled job again with a fresh set of retries; False if its state
        does not allow it, `JobNotFoundError` for an unknown id. A parent that failed because of
        it (or went on without it) waits for it again."""
        retried = self._jobs.retry_job(queue, job_id)
        if retried:
            self._flows.rearm_waiters(queue, job_id)
        return retried

    def cancel_job(self, queue: str, job_id: str, terminate: bool = False, reason: str = "cancelled") -> bool:
        """Cancel a waiting, delayed or active job, or one in waiting_children; it ends ``cancelled``
        with ``reason``. A running attempt is asked to stop (``job.is_cancelled()``) and interrupted
        after ``cancel_grace_ms``; ``terminate`` ends a prefork process running it at once. False if
        it had finished. Its flow children that have not started (and wait for nothing else) are
        cancelled too."""
        was_waiting = self._flows.is_waiting_children(queue, job_id)
        cancelled = self._jobs.cancel_job(queue, job_id, terminate, reason)
        if cancelled:
            self._flows.cancel_below(queue, job_id, was_waiting)
        return cancelled

    def update_job_priority(self, queue: str, job_id: str, priority: int) -> bool:
        """Change the priority (1 highest .. 10 lowest) of a waiting or delayed job; False if its
        state does not allow it."""
        return self._jobs.update_job_priority(queue, job_id, priority)

    def promote_job(self, queue: str, job_id: str) -> bool:
        """Move a delayed job to waiting now; False if it is not delayed."""
        return self._jobs.promote_job(queue, job_id)

    def remove_job(self, queue: str, job_id: str) -> bool:
        """Delete a job that is not active, with its logs (a waiting or delayed one is cancelled
        first); False for an active job."""
        return self._jobs.remove_job(queue, job_id)

    def wait_for_job(self, queue: str, job_id: str, timeout: float) -> Job:
        """Block until the job is completed, failed or cancelled and return it; `WaitTimeoutError`
        (a `TimeoutError`) after ``timeout`` s, the job going on."""
        return self._jobs.wait_for_job(queue, job_id, timeout)

    # ----------------------------------------------------------------------------- flows and batches

    def add_flow(self, flow: FlowJob) -> FlowNode:
        """Write a tree of jobs across queues; each parent waits in waiting_children for its children."""
        return self._flows.add_flow(flow)

    def get_flow(self, queue: str, job_id: str) -> FlowNode | None:
        """The flow below a job with current states; None if there is no such job."""
        self._queues.cached_config(queue)
        node = self._flows.get_flow(queue, job_id)
        if node is not None:
            for each in node.walk():
                each.job._flows = self._flows
        return node

    def remove_flow(self, queue: str, job_id: str) -> int:
        """Remove a job and every job below it (cancelling those not finished); returns the count."""
        return self._flows.remove_flow(queue, job_id)

    def batch(self, on_complete: FlowJob | None = None, on_success: FlowJob | None = None) -> Batch:
        """Open a batch (use it in a ``with`` block: sealed on exit); the callbacks run once."""
        return open_batch(self._flows, str(uuid.uuid4()), on_complete, on_success)

    def get_batch(self, batch_id: str) -> BatchStatus:
        """A batch's progress: total, pending, succeeded, failed, done."""
        return read_batch(self._flows, batch_id)

    def cancel_batch(self, batch_id: str) -> int:
        """Cancel a batch's members that have not started and its callbacks; returns how many."""
        return cancel_batch(self._flows, batch_id)

    def signature(self, queue: str, data: Any = None, **options: Any) -> Signature:
        """A Celery signature of the queue's processor with ``data``, for `apply_canvas`."""
        return self.app.signature(self._keys.task_name(check_queue_name(queue)), args=(data,), **options)

    def apply_canvas(self, canvas: Signature) -> CanvasRun:
        """Run a Celery ``chain`` / ``group`` / ``chord`` (with ``link`` / ``link_error``) of
        processor signatures on the flow engine; use it where Celery code calls ``apply_async()``."""
        return CanvasWriter(self._flows, self._keys, self.app if self._adopted_app else None).write(canvas)

    # ----------------------------------------------------------------------------- recurring jobs

    def schedule_recurring_job(self, queue: str, job_name: str, data: Any,
                               options: RecurringJobOptions | None = None, **fields: Any) -> RecurringJob:
        """Schedule ``job_name`` on ``queue`` by ``cron`` (with ``tz``) or ``every`` ms
        (`RecurringJobOptions`); scheduling the same ``key`` again updates it. Each tick fires
        once, however many beats run."""
        return self._recurring.schedule_recurring_job(queue, job_name, data, options, **fields)

    def get_recurring_jobs(self, queue: str | None = None) -> list[RecurringJob]:
        """The recurring jobs of ``queue`` (None: of every queue) with their next run."""
        return self._recurring.get_recurring_jobs(queue)

    def remove_recurring_job(self, queue: str, key: str) -> bool:
        """Stop a recurring job; False if there was none with that key."""
        return self._recurring.remove_recurring_job(queue, key)

    def beat_lock_ttl_ms(self) -> int:
        """How much longer the leading beat holds its lock (ms); 0 when no beat runs (the beat
        probe `coordinator health --beat`)."""
        return self._recurring.beat_lock_ttl_ms()

    def pause_recurring_job(self, queue: str, key: str) -> bool:
        """Stop firing a recurring job until `resume_recurring_job`; its ticks meanwhile create
        no job and are not caught up. False if there is no such schedule."""
        return self._recurring.pause_recurring_job(queue, key)

    def resume_recurring_job(self, queue: str, key: str) -> bool:
        """Fire a paused recurring job again from its next tick; False if there is no such schedule."""
        return self._recurring.resume_recurring_job(queue, key)

    def backfill_recurring_job(self, queue: str, key: str, start: datetime, end: datetime) -> list[Job]:
        """One run per tick of the schedule in [start, end], each once (see docs/control.md)."""
        return self._recurring.backfill_recurring_job(queue, key, start, end)

    # ----------------------------------------------------------------------------- workers

    def register_worker(self, queue: str, processor: Processor | None = None,
                        options: WorkerOptions | None = None, **fields: Any) -> WorkerStatus:
        """Start a managed `celery worker` process for ``queue`` and return its status once it
        consumes. ``processor``: an importable module-level callable, else the one registered with
        `processor`; ``options`` / ``fields``: `WorkerOptions`. `WorkerStartError` after 30 s."""
        return self._workers.register_worker(queue, processor, options, **fields)

    def close_worker(self, worker_id: str, timeout: float = 30) -> None:
        """Warm shutdown of a managed worker: running jobs finish (up to ``timeout`` s), then the
        process stops. `WorkerNotFoundError` for an unknown id."""
        self._workers.close_worker(worker_id, timeout)

    def get_worker(self, worker_id: str) -> WorkerStatus:
        """The status of one managed worker (from its process and its heartbeat)."""
        return self._workers.get_worker(worker_id)

    def get_workers_by_queue(self, queue: str) -> list[WorkerStatus]:
        """The status of every managed worker of ``queue`` in this process."""
        return self._workers.get_workers_by_queue(queue)

    def get_all_worker_status(self) -> list[WorkerStatus]:
        """The status of every worker this coordinator manages."""
        return self._workers.get_all_worker_status()

    def scale_workers(self, queue: str, target_count: int) -> ScalingResult:
        """Start or warm-stop managed workers of ``queue`` until it has ``target_count``; returns
        once new ones consume and stopped ones are gone."""
        return self._workers.scale_workers(queue, target_count)

    def pause_worker(self, worker_id: str) -> None:
        """That worker stops taking jobs (its running jobs finish); the queue's other workers go on."""
        self._workers.pause_worker(worker_id)

    def resume_worker(self, worker_id: str) -> None:
        """That worker takes jobs again."""
        self._workers.resume_worker(worker_id)

    def set_autoscale_policy(self, queue: str, policy: AutoscalePolicy | None,
                             processor: Processor | None = None) -> None:
        """Scale ``queue``'s managed workers by its depth under ``policy`` (None removes it);
        ``processor`` for the workers it starts."""
        self._workers.set_autoscale_policy(queue, policy, processor)

    def get_autoscale_policy(self, queue: str) -> AutoscalePolicy | None:
        """The queue's autoscale policy, or None."""
        return self._workers.get_autoscale_policy(queue)

    # ----------------------------------------------------------------------------- observability

    def on(self, event: EventName | str, handler: Callable[[Event], object], queue: str | None = None) -> None:
        """Call ``handler(Event)`` on the listener thread for each ``event`` (an `EventName`, or
        ``"*"``: all, including ``worker`` events) of ``queue`` (None: every queue) from now on.
        `InvalidArgumentError` for an unknown event name."""
        self._listener().on(event, handler, queue)

    def off(self, event: EventName | str, handler: Callable[[Event], object]) -> None:
        """Stop calling ``handler`` for ``event``."""
        self._listener().off(event, handler)

    def events(self, queue: str, since: str | None = None, *, follow: bool = False,
               idle_timeout_s: float | None = None) -> Iterator[Event]:
        """The queue's events after id ``since`` (None: the oldest kept, ``"$"``: new ones only);
        with ``follow``, keep waiting for more. Resumes from the last id after a dropped connection."""
        return iter_events(self._registry, queue, since, follow=follow, idle_timeout_s=idle_timeout_s)

    def get_metrics(self, queue: str, minutes: int = 60) -> list[MetricsPoint]:
        """The queue's per-minute metrics for the last ``minutes`` minutes, oldest first."""
        return self._queues.metrics_series(queue, minutes)

    def get_health(self, thresholds: HealthThresholds | None = None) -> Health:
        """Redis, its settings, managed workers and every queue: healthy, degraded or unhealthy."""
        return self._health.check(thresholds)

    def get_queue_snapshots(self) -> list[QueueSnapshot]:
        """Every queue's counts, paused flag, oldest waiting job, recent metrics, totals since it
        began and live workers, read together (what the exporter and `coordinator status` show)."""
        return self._health.queue_snapshots()

    def get_live_workers(self) -> list[dict[str, str]]:
        """The heartbeat record of every worker of this prefix on any host whose heartbeat is
        fresh, managed here or not (fields: `coordinator.heartbeats`)."""
        return self._heartbeats.live_records()

    @property
    def worker_log_dir(self) -> Path:
        """The directory of the managed workers' log files."""
        return self._workers.log_dir

    def _listener(self) -> EventListener:
        with self._mutex:
            if self._event_listener is None:
                self._event_listener = EventListener(self._registry, self.settings)
            return self._event_listener

    # ----------------------------------------------------------------------------- lifecycle

    def shutdown(self, timeout: float = 30) -> None:
        """Close every managed worker gracefully, then the connections."""
        self._workers.shutdown(timeout)
        if self._adopted is not None:
            self._adopted.uninstall()
        if self._event_listener is not None:
            self._event_listener.close()
        self._redis.close()
        self._redis.connection_pool.disconnect()

    def __enter__(self) -> JobQueueCoordinator:
        """The coordinator itself; `shutdown` runs on exit."""
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """`shutdown` with the default timeout."""
        self.shutdown()
