"""JobQueueCoordinator: the one object users hold; it composes the three managers and the registry.

    JobQueueCoordinator
    ├── QueueManager   (queues.py)     queues: create, pause, resume, delete, status
    ├── JobScheduler   (scheduler.py)  jobs: enqueue, schedule, read, retry, cancel, prioritise
    ├── WorkerManager  (workers/)      managed `celery worker` processes
    ├── RecurringManager (recurring/)  recurring jobs: redbeat entries fired once per tick
    └── Registry       (registry/)     job records and state moves in Redis (Lua)
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from celery import Celery

from coordinator.broker import OutboxRelay
from coordinator.celery_config import build_app
from coordinator.connection import connect
from coordinator.errors import ConfigurationError
from coordinator.events import EventListener, iter_events
from coordinator.health import check_health
from coordinator.keys import CoordinatorKeys
from coordinator.models import (
    AutoscalePolicy,
    BulkJob,
    Event,
    Health,
    HealthThresholds,
    Job,
    JobOptions,
    JobState,
    MetricsPoint,
    QueueConfig,
    QueueInfo,
    QueueStatus,
    RecurringJob,
    RecurringJobOptions,
    ScalingResult,
    ScheduleOptions,
    WorkerOptions,
    WorkerStatus,
)
from coordinator.queues import QueueManager
from coordinator.recurring import RecurringManager
from coordinator.registry import Registry
from coordinator.runtime.beat_scheduler import configure_beat
from coordinator.runtime.foreign import ForeignTaskTracker
from coordinator.runtime.locks import LockKeeper
from coordinator.runtime.maintenance import maintenance_step
from coordinator.runtime.task import Processor, register_processor_task
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
        self.keys = CoordinatorKeys(settings.prefix)
        self.redis = connect(settings)
        self.registry = Registry(self.redis, settings.prefix, settings.events_max_len,
                                 finish_retry_s=settings.lock_duration_ms / 1000,
                                 outbox=not settings.broker_is_redis)
        self.adopted_app = app is not None
        self.app = build_app(settings, app)
        self.app.steps["consumer"].add(maintenance_step(self))
        if self.registry.outbox:
            self.registry.after_dispatch = OutboxRelay(self.app, self.registry).flush
        self.processors: dict[str, Processor] = {}
        self.queues = QueueManager(self.registry, settings)
        self.jobs = JobScheduler(self.registry, self.queues, settings, self.app, self._default_job_name)
        self.workers = WorkerManager(self)
        self.recurring = RecurringManager(self.redis, self.keys, self.queues, self.jobs, settings)
        configure_beat(self.app, settings, self.recurring.fire)
        self._lock_keeper: LockKeeper | None = None
        self._async_runner: AsyncRunner | None = None
        #: Concurrent jobs of an ``async def`` processor in this process (None: WORKER_CONCURRENCY).
        self.async_concurrency: int | None = None
        #: Queues whose messages this process's event loop takes itself, not Celery's consumer.
        self.async_queues: set[str] = set()
        self._mutex = threading.Lock()
        self._foreign = ForeignTaskTracker(self) if self.adopted_app else None
        if self._foreign is not None:
            self._foreign.connect()
        self._event_listener: EventListener | None = None

    # ----------------------------------------------------------------------------- processors

    def processor(self, queue: str) -> Callable[[Processor], Processor]:
        """Decorator: register the queue's one handler. Returns the function unchanged."""
        check_queue_name(queue)

        def register(handler: Processor) -> Processor:
            existing = self.processors.get(queue)
            if existing is not None and existing is not handler:
                raise ConfigurationError(f"processor: queue {queue!r} already has processor {existing.__name__}")
            if existing is None:
                self.processors[queue] = handler
                register_processor_task(self, queue, handler)
            return handler

        return register

    def celery_queue(self, name: str) -> str:
        """The Celery queue that carries the jobs of coordinator queue ``name``."""
        return self.keys.for_queue(check_queue_name(name)).celery_queue

    def _default_job_name(self, queue: str) -> str:
        """The processor's name: registered here, else as its workers recorded it, else the queue's."""
        handler = self.processors.get(queue)
        if handler is not None:
            return handler.__name__
        return self.queues.processor_name(queue) or queue

    @property
    def async_runner(self) -> AsyncRunner:
        """This process's event loop for ``async def`` processors (made on first use, per process)."""
        from coordinator.runtime.async_runner import AsyncRunner

        with self._mutex:
            if self._async_runner is None or self._async_runner.pid != os.getpid():
                self._async_runner = AsyncRunner(self, self.async_concurrency or self.settings.worker_concurrency)
            return self._async_runner

    @property
    def lock_keeper(self) -> LockKeeper:
        with self._mutex:
            if self._lock_keeper is None:
                self._lock_keeper = LockKeeper(self.registry, self.settings.lock_duration_ms)
            return self._lock_keeper

    # ----------------------------------------------------------------------------- queues

    def create_queue(self, config: QueueConfig | str, **fields: Any) -> QueueInfo:
        return self.queues.create_queue(config, **fields)

    def get_queue(self, name: str) -> QueueInfo:
        return self.queues.get_queue(name)

    def get_queue_names(self) -> list[str]:
        return self.queues.get_queue_names()

    def get_queue_status(self, name: str) -> QueueStatus:
        return self.queues.get_queue_status(name)

    def pause_queue(self, name: str) -> None:
        self.queues.pause_queue(name)

    def resume_queue(self, name: str) -> None:
        self.queues.resume_queue(name)

    def delete_queue(self, name: str) -> None:
        self.recurring.remove_queue(name)
        self.queues.delete_queue(name)

    # ----------------------------------------------------------------------------- jobs

    def enqueue_job(self, queue: str, data: Any, options: JobOptions | None = None, *,
                    name: str | None = None, **option_fields: Any) -> Job:
        return self.jobs.enqueue_job(queue, data, options, name=name, **option_fields)

    def enqueue_bulk(self, queue: str, jobs: Iterable[BulkJob | dict[str, Any]]) -> list[Job]:
        return self.jobs.enqueue_bulk(queue, jobs)

    def schedule_job(self, queue: str, job_name: str, data: Any, options: ScheduleOptions | None = None,
                     **fields: Any) -> Job:
        return self.jobs.schedule_job(queue, job_name, data, options, **fields)

    def get_job(self, queue: str, job_id: str) -> Job | None:
        return self.jobs.get_job(queue, job_id)

    def get_jobs(self, queue: str, states: Iterable[JobState | str] | JobState | str, start: int = 0,
                 end: int = -1, asc: bool = False) -> list[Job]:
        return self.jobs.get_jobs(queue, states, start, end, asc)

    def get_failed_jobs(self, queue: str, start: int = 0, end: int = -1) -> list[Job]:
        return self.jobs.get_failed_jobs(queue, start, end)

    def retry_job(self, queue: str, job_id: str) -> bool:
        return self.jobs.retry_job(queue, job_id)

    def cancel_job(self, queue: str, job_id: str, terminate: bool = False) -> bool:
        return self.jobs.cancel_job(queue, job_id, terminate)

    def update_job_priority(self, queue: str, job_id: str, priority: int) -> bool:
        return self.jobs.update_job_priority(queue, job_id, priority)

    def promote_job(self, queue: str, job_id: str) -> bool:
        return self.jobs.promote_job(queue, job_id)

    def wait_for_job(self, queue: str, job_id: str, timeout: float) -> Job:
        return self.jobs.wait_for_job(queue, job_id, timeout)

    # ----------------------------------------------------------------------------- recurring jobs

    def schedule_recurring_job(self, queue: str, job_name: str, data: Any,
                               options: RecurringJobOptions | None = None, **fields: Any) -> RecurringJob:
        return self.recurring.schedule_recurring_job(queue, job_name, data, options, **fields)

    def get_recurring_jobs(self, queue: str | None = None) -> list[RecurringJob]:
        return self.recurring.get_recurring_jobs(queue)

    def remove_recurring_job(self, queue: str, key: str) -> bool:
        return self.recurring.remove_recurring_job(queue, key)

    # ----------------------------------------------------------------------------- workers

    def register_worker(self, queue: str, processor: Processor | None = None,
                        options: WorkerOptions | None = None, **fields: Any) -> WorkerStatus:
        return self.workers.register_worker(queue, processor, options, **fields)

    def close_worker(self, worker_id: str, timeout: float = 30) -> None:
        self.workers.close_worker(worker_id, timeout)

    def get_worker(self, worker_id: str) -> WorkerStatus:
        return self.workers.get_worker(worker_id)

    def get_workers_by_queue(self, queue: str) -> list[WorkerStatus]:
        return self.workers.get_workers_by_queue(queue)

    def get_all_worker_status(self) -> list[WorkerStatus]:
        return self.workers.get_all_worker_status()

    def scale_workers(self, queue: str, target_count: int) -> ScalingResult:
        return self.workers.scale_workers(queue, target_count)

    def pause_worker(self, worker_id: str) -> None:
        self.workers.pause_worker(worker_id)

    def resume_worker(self, worker_id: str) -> None:
        self.workers.resume_worker(worker_id)

    def set_autoscale_policy(self, queue: str, policy: AutoscalePolicy | None,
                             processor: Processor | None = None) -> None:
        self.workers.set_autoscale_policy(queue, policy, processor)

    def get_autoscale_policy(self, queue: str) -> AutoscalePolicy | None:
        return self.workers.get_autoscale_policy(queue)

    # ----------------------------------------------------------------------------- observability

    def on(self, event: str, handler: Callable[[Event], object], queue: str | None = None) -> None:
        """Call ``handler(Event)`` on the listener thread for each ``event`` (``"*"``: all) of
        ``queue`` (None: every queue) from now on."""
        self._listener().on(event, handler, queue)

    def off(self, event: str, handler: Callable[[Event], object]) -> None:
        """Stop calling ``handler`` for ``event``."""
        self._listener().off(event, handler)

    def events(self, queue: str, since: str | None = None, *, follow: bool = False,
               idle_timeout_s: float | None = None) -> Iterator[Event]:
        """The queue's events after id ``since`` (None: the oldest kept, ``"$"``: new ones only);
        with ``follow``, keep waiting for more. Resumes from the last id after a dropped connection."""
        return iter_events(self, queue, since, follow=follow, idle_timeout_s=idle_timeout_s)

    def get_metrics(self, queue: str, minutes: int = 60) -> list[MetricsPoint]:
        """The queue's per-minute metrics for the last ``minutes`` minutes, oldest first."""
        return self.queues.metrics_series(queue, minutes)

    def get_health(self, thresholds: HealthThresholds | None = None) -> Health:
        """Redis, its settings, managed workers and every queue: healthy, degraded or unhealthy."""
        return check_health(self, thresholds)

    def _listener(self) -> EventListener:
        with self._mutex:
            if self._event_listener is None:
                self._event_listener = EventListener(self)
            return self._event_listener

    # ----------------------------------------------------------------------------- lifecycle

    def shutdown(self, timeout: float = 30) -> None:
        """Close every managed worker gracefully, then the connections."""
        self.workers.shutdown(timeout)
        if self._foreign is not None:
            self._foreign.disconnect()
        if self._event_listener is not None:
            self._event_listener.close()
        self.redis.close()
        self.redis.connection_pool.disconnect()

    def __enter__(self) -> JobQueueCoordinator:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.shutdown()
