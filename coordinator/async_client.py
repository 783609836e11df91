"""AsyncJobQueueCoordinator: the producer and read side of the coordinator for asyncio services.

It runs the same sans-IO operations as `JobQueueCoordinator` (`registry.ops`, `queues.QueueReads`,
`scheduler.JobPlans`) over redis.asyncio: the same Lua scripts, the same models, the same
validation errors, and no call that waits on a socket outside the event loop. Workers stay on the
sync coordinator (they run in worker processes). Where Celery itself must be called (stopping a
running sync job, publishing an outbox to a non-Redis broker), and for the admin calls whose parts
are written for redis-py (recurring jobs, `get_health`), the sync implementation runs in a worker
thread (`asyncio.to_thread`), built from the same parts as the sync coordinator's (`_SyncParts`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from types import TracebackType
from typing import Any

from celery import Celery

from coordinator.broker import OutboxRelay
from coordinator.celery_config import build_app
from coordinator.connection import connect, connect_async
from coordinator.events import AsyncEventListener, EventCursor
from coordinator.flows.handoff import HandOff
from coordinator.flows.producer import FlowProducer
from coordinator.groups import GroupOps
from coordinator.health import HealthChecker
from coordinator.heartbeats import HeartbeatOps, HeartbeatStore
from coordinator.models import (
    BulkJob,
    Event,
    EventName,
    GroupConfig,
    Health,
    HealthThresholds,
    Job,
    JobOptions,
    JobState,
    QueueConfig,
    QueueInfo,
    QueueStatus,
    RecurringJob,
    RecurringJobOptions,
    ScheduleOptions,
)
from coordinator.queues import QueueManager, QueueReads, queue_config
from coordinator.recurring import RecurringManager
from coordinator.registry import Registry
from coordinator.registry.aio import AsyncRegistry
from coordinator.registry.flows import FlowRegistry
from coordinator.registry.ops import RegistryOps
from coordinator.scheduler import WAIT_BLOCK_MS, Item, JobPlans, JobScheduler
from coordinator.settings import BuiltFromSettings, Settings


class _SyncParts:
    """The redis-py parts behind the async client's admin calls (recurring jobs, health), built
    on first use as the sync coordinator builds them; their calls run in a worker thread."""

    def __init__(self, settings: Settings, app: Celery, default_job_name: Callable[[str], str]) -> None:
        client = connect(settings)
        self.registry = Registry(client, settings.prefix, settings.events_max_len, outbox=not settings.broker_is_redis)
        self.relay = OutboxRelay(app, self.registry) if self.registry.outbox else None
        if self.relay is not None:
            self.registry.after_dispatch = self.relay.flush
        heartbeats = HeartbeatStore(client, self.registry.keys)
        queues = QueueManager(self.registry, settings, heartbeats)
        jobs = JobScheduler(self.registry, queues, settings, app, default_job_name)
        flow_registry = FlowRegistry(self.registry)
        self.flows = FlowProducer(self.registry, flow_registry, jobs, HandOff(flow_registry))
        """A cancel's or retry's follow-ups in flows (cascade, re-arm, hand-off), as the sync client's."""
        self.registry.on_handoff = self.flows.handoff.apply_written
        self.recurring = RecurringManager(client, self.registry.keys, queues, jobs, settings)
        # a service's own process manages no workers: the queue checks see the live ones
        self.health = HealthChecker(self.registry, heartbeats, settings, lambda: [])

    def close(self) -> None:
        self.registry.client.close()


class AsyncJobQueueCoordinator(BuiltFromSettings):
    """The coordinator's queue and job methods as coroutines; use ``async with`` (or `close`).

    Takes the same keywords as `JobQueueCoordinator`; no connection is opened until the first call.
    """

    def _init(self, settings: Settings, app: Celery | None) -> None:
        self.settings = settings
        ops = RegistryOps(settings.prefix, settings.events_max_len, outbox=not settings.broker_is_redis)
        ops.lease_ms = settings.lock_duration_ms
        # a blocking read (XREAD BLOCK of wait_for_job and events) must not hit the read timeout
        self._redis = connect_async(settings, extra_read_s=WAIT_BLOCK_MS / 1000)
        self._registry = AsyncRegistry(self._redis, ops)
        ops.on_handoff = self._apply_handoff
        self._handoffs: set[asyncio.Future[None]] = set()
        self._reads = QueueReads(ops, HeartbeatOps(ops.keys), settings)
        self._plans = JobPlans(ops, self._reads, settings, self._default_job_name)
        self._groups = GroupOps(ops)
        self._given_app = app
        self._app: Celery | None = None
        self._sync: _SyncParts | None = None
        self._listener = AsyncEventListener(self._registry)

    def _default_job_name(self, queue: str) -> str:
        """The queue's processor name as its workers recorded it (read with the config), else the queue's."""
        return self._reads.cached_processor(queue) or queue

    @property
    def app(self) -> Celery:
        """The Celery app (built on first use): only calls that must reach Celery use it."""
        if self._app is None:
            self._app = build_app(self.settings, self._given_app)
        return self._app

    async def _run(self, op: Any) -> Any:
        return await self._registry.run(op)

    def _apply_handoff(self, queue: str, field: str, entry: str) -> None:
        """A cancel wrote a flow hand-off (a parent waits for the job): applied now by a worker
        thread, not on the loop (the workers' flow sweep would apply it later)."""
        handoff = self._sync_parts().flows.handoff
        applied = asyncio.get_running_loop().run_in_executor(None, handoff.apply_written, queue, field, entry)
        self._handoffs.add(applied)
        applied.add_done_callback(self._handoffs.discard)

    def _sync_parts(self) -> _SyncParts:
        if self._sync is None:
            self._sync = _SyncParts(self.settings, self.app, self._default_job_name)
        return self._sync

    async def _after_dispatch(self, queue: str) -> None:
        """With a non-Redis broker, publish the messages the scripts left in the outbox."""
        if self._registry.ops.outbox:
            relay = self._sync_parts().relay
            assert relay is not None
            await asyncio.to_thread(relay.flush, queue)

    # ----------------------------------------------------------------------------- queues

    async def create_queue(self, config: QueueConfig | str, **fields: Any) -> QueueInfo:
        """Create a queue, or update its config; idempotent for the same config."""
        info: QueueInfo = await self._run(self._reads.save_op(queue_config(config, fields)))
        return info

    async def get_queue(self, name: str) -> QueueInfo:
        """The queue's config and state; `QueueNotFoundError` if unknown."""
        info: QueueInfo = await self._run(self._reads.info_op(name))
        return info

    async def get_queue_names(self) -> list[str]:
        """Names of every queue of this prefix, sorted."""
        names: list[str] = await self._run(self._registry.ops.queue_names())
        return names

    async def get_queue_status(self, name: str) -> QueueStatus:
        """Counts per state, metrics, health and live workers of the queue."""
        status: QueueStatus = await self._run(self._reads.status_op(name))
        return status

    async def pause_queue(self, name: str) -> None:
        """No worker starts a new job of the queue until `resume_queue`."""
        await self._run(self._registry.ops.set_paused(name, True))

    async def resume_queue(self, name: str) -> None:
        """Let the queue's jobs run again; the jobs held while paused are dispatched now."""
        await self._run(self._registry.ops.set_paused(name, False))
        limiter = (await self._run(self._plans.config_op(name))).limiter
        while await self._run(self._registry.sweeps.release_parked(name, limiter)) and limiter is None:
            pass
        await self._run(self._registry.ops.release_groups(name))
        await self._after_dispatch(name)

    # ----------------------------------------------------------------------------- groups, limiters

    async def set_group_config(self, queue: str, group: str, config: GroupConfig) -> None:
        """Set the limits of one group of a queue (see `JobQueueCoordinator.set_group_config`)."""
        await self._run(self._groups.set_config_op(queue, group, config))
        await self._after_dispatch(queue)

    async def pause_group(self, queue: str, group: str) -> None:
        """Release none of the group's jobs until `resume_group`."""
        await self._run(self._groups.set_paused_op(queue, group, True))

    async def resume_group(self, queue: str, group: str) -> None:
        """Serve a paused group again."""
        await self._run(self._groups.set_paused_op(queue, group, False))
        await self._after_dispatch(queue)

    async def set_limiter(self, name: str, max_concurrent: int) -> None:
        """Create or change a named limiter shared by every queue of the prefix."""
        await self._run(self._groups.set_limiter_op(name, max_concurrent))

    # ----------------------------------------------------------------------------- jobs

    async def enqueue_job(self, queue: str, data: Any, options: JobOptions | None = None, *,
                          name: str | None = None, **option_fields: Any) -> Job:
        """Add one job; with ``job_id`` of an existing job, return that job and write nothing."""
        config = await self._run(self._plans.config_op(queue))
        return (await self._add(queue, [(data, name, self._plans.resolve_options(queue, config, options,
                                                                                 option_fields))]))[0]

    async def enqueue_bulk(self, queue: str, jobs: Iterable[BulkJob | dict[str, Any]]) -> list[Job]:
        """Add many jobs, 500 per round trip; all are validated before any is written."""
        config = await self._run(self._plans.config_op(queue))
        return await self._add(queue, self._plans.bulk_items(queue, config, jobs))

    async def schedule_job(self, queue: str, job_name: str, data: Any, options: ScheduleOptions | None = None,
                           **fields: Any) -> Job:
        """Add a job that starts after ``delay`` ms or at ``run_at``."""
        job_fields = self._plans.schedule_fields(options, fields)
        config = await self._run(self._plans.config_op(queue))
        return (await self._add(queue, [(data, job_name, self._plans.resolve_options(queue, config, None,
                                                                                     job_fields))]))[0]

    async def _add(self, queue: str, items: list[Item]) -> list[Job]:
        jobs: list[Job] = await self._run(self._plans.add_op(queue, items))
        await self._after_dispatch(queue)
        return jobs

    async def get_job(self, queue: str, job_id: str) -> Job | None:
        """The job as it is now, or None."""
        job: Job | None = await self._run(self._plans.get_job_op(queue, job_id))
        return job

    async def get_jobs(self, queue: str, states: Iterable[JobState | str] | JobState | str, start: int = 0,
                       end: int = -1, asc: bool = False) -> list[Job]:
        """Jobs in the given states, newest first; ``start``/``end`` inclusive as in Redis."""
        jobs: list[Job] = await self._run(self._plans.get_jobs_op(queue, states, start, end, asc))
        return jobs

    async def get_failed_jobs(self, queue: str, start: int = 0, end: int = -1) -> list[Job]:
        """The queue's failed jobs, newest first."""
        return await self.get_jobs(queue, [JobState.FAILED], start, end)

    async def retry_job(self, queue: str, job_id: str) -> bool:
        """Run a failed or cancelled job again with a fresh set of retries."""
        retried: bool = await self._run(self._plans.retry_op(queue, job_id))
        if retried:
            await self._after_dispatch(queue)
            await asyncio.to_thread(self._sync_parts().flows.rearm_waiters, queue, job_id)
        return retried

    async def cancel_job(self, queue: str, job_id: str, terminate: bool = False, reason: str = "cancelled") -> bool:
        """Cancel a waiting, delayed or active job, as `JobQueueCoordinator.cancel_job`: a running
        attempt is asked to stop (an async processor's coroutine is cancelled); ``terminate``
        also ends a prefork process running it now."""
        cancelled, running_task, state = await self._run(self._plans.cancel_op(queue, job_id, terminate, reason))
        if running_task is not None:
            await asyncio.to_thread(self.app.control.revoke, running_task, terminate=True, signal="SIGTERM")
        if cancelled:  # its flow children that have not started, as the sync client does
            await asyncio.to_thread(self._sync_parts().flows.cancel_below, queue, job_id,
                                    state == JobState.WAITING_CHILDREN.value)
        if self._handoffs:
            await asyncio.gather(*self._handoffs)
        return bool(cancelled)

    async def remove_job(self, queue: str, job_id: str) -> bool:
        """Delete a job that is not active, with its logs (a waiting or delayed one is cancelled
        first); False for an active job."""
        removed: bool = await self._run(self._plans.remove_op(queue, job_id))
        return removed

    async def wait_for_job(self, queue: str, job_id: str, timeout: float) -> Job:
        """The job once completed, failed or cancelled, woken by its events (no polling);
        `TimeoutError` after ``timeout`` s."""
        job: Job = await self._run(self._plans.wait_op(queue, job_id, timeout))
        return job

    async def events(self, queue: str, since: str | None = None, *, follow: bool = False,
                     idle_timeout_s: float | None = None) -> AsyncIterator[Event]:
        """``async for`` over the queue's events after id ``since`` (None: the oldest kept, ``"$"``:
        new ones only); with ``follow``, keep waiting for more (see `events.EventCursor`)."""
        await self.get_queue(queue)
        cursor = EventCursor(self._registry.ops, queue, since, follow=follow, idle_timeout_s=idle_timeout_s)
        while not cursor.done:
            for event in await self._run(cursor.next_op()):
                yield event

    async def on(self, event: EventName | str, handler: Callable[[Event], Any], queue: str | None = None) -> None:
        """Call ``handler(Event)`` on this event loop (awaited when it is a coroutine function) for
        each ``event`` (an `EventName`, or ``"*"``) of ``queue`` (None: every queue) from now on;
        one task reads the streams. `InvalidArgumentError` for an unknown event name."""
        await self._listener.on(event, handler, queue)

    def off(self, event: EventName | str, handler: Callable[[Event], Any]) -> None:
        """Stop calling ``handler`` for ``event``."""
        self._listener.off(event, handler)

    # ----------------------------------------------------------------------------- recurring jobs, health

    async def schedule_recurring_job(self, queue: str, job_name: str, data: Any,
                                     options: RecurringJobOptions | None = None, **fields: Any) -> RecurringJob:
        """Schedule ``job_name`` on ``queue`` by ``cron`` or ``every`` ms, as the sync coordinator
        does (`RecurringJobOptions`); the same ``key`` again updates it."""
        return await asyncio.to_thread(self._sync_parts().recurring.schedule_recurring_job, queue, job_name,
                                       data, options, **fields)

    async def get_recurring_jobs(self, queue: str | None = None) -> list[RecurringJob]:
        """The recurring jobs of ``queue`` (None: of every queue) with their next run."""
        return await asyncio.to_thread(self._sync_parts().recurring.get_recurring_jobs, queue)

    async def remove_recurring_job(self, queue: str, key: str) -> bool:
        """Stop a recurring job; False if there was none with that key."""
        return await asyncio.to_thread(self._sync_parts().recurring.remove_recurring_job, queue, key)

    async def get_health(self, thresholds: HealthThresholds | None = None) -> Health:
        """Redis, its settings and every queue (with its live workers): healthy, degraded or
        unhealthy; this process manages no workers of its own."""
        return await asyncio.to_thread(self._sync_parts().health.check, thresholds)

    # ----------------------------------------------------------------------------- lifecycle

    async def close(self) -> None:
        """Stop the event handlers' task and close the connections."""
        await self._listener.close()
        if self._handoffs:
            await asyncio.gather(*self._handoffs, return_exceptions=True)
        await self._redis.aclose()
        if self._sync is not None:
            self._sync.close()

    async def __aenter__(self) -> AsyncJobQueueCoordinator:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()
