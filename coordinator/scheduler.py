"""JobScheduler: enqueue, schedule and control one-off jobs."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any

from celery import Celery

from coordinator.clock import now_ms
from coordinator.dedup import dedup_entry
from coordinator.dispatch import task_id
from coordinator.errors import JobNotFoundError, WaitTimeoutError
from coordinator.models import BulkJob, Job, JobOptions, JobState, QueueConfig, ScheduleOptions
from coordinator.queues import QueueManager, QueueReads
from coordinator.registry import NewJob, Registry
from coordinator.registry.calls import Op
from coordinator.registry.codec import to_ms
from coordinator.registry.ops import RegistryOps
from coordinator.registry.replies import Added
from coordinator.settings import Settings
from coordinator.validation import MAX_LOG_LINE, encode_json

#: Keys of an `enqueue_bulk` item that the fast path takes without building a `BulkJob`.
_PLAIN_BULK_KEYS = frozenset({"data", "name"})
_FINAL_STATES = {JobState.COMPLETED.value, JobState.FAILED.value, JobState.CANCELLED.value}
#: Longest single XREAD BLOCK of `wait_for_job` (and at most half the socket timeout, so the
#: socket never times out first); the job is read again after each.
WAIT_BLOCK_MS = 1000
#: One job to write: its data, name (None: the processor's) and resolved options.
Item = tuple[Any, "str | None", JobOptions]


def is_final_event(fields: dict[str, str], job_id: str) -> bool:
    """Whether a stream entry says that job ``job_id`` reached a final state."""
    return fields.get("job_id") == job_id and fields.get("event") in _FINAL_STATES


class JobPlans:
    """The job operations the sync and async clients share, as sans-IO operations (run them with
    `Registry.run` or `AsyncRegistry.run`), and the pure steps of an enqueue around them."""

    def __init__(self, ops: RegistryOps, reads: QueueReads, settings: Settings,
                 default_name: Callable[[str], str]) -> None:
        self.ops = ops
        self.reads = reads
        self.settings = settings
        self._default_name = default_name
        # queue -> (config it was resolved from, options): the options of a job given no options
        self._plain_options: dict[str, tuple[QueueConfig, JobOptions]] = {}
        self._known_limiters: dict[str, float] = {}  # limiter name -> when it was seen to exist

    def check_limits_op(self, items: list[Item]) -> Op[None]:
        """InvalidArgumentError naming ``limits`` if a job names a limiter never set (names seen
        to exist are trusted for `config_cache_s`); nothing is written before this check."""
        now = time.monotonic()
        ttl = self.settings.config_cache_s
        names = {name for _, _, opts in items for name in opts.limits
                 if now - self._known_limiters.get(name, -ttl - 1) > ttl}
        if names:
            yield from self.ops.limiter_maxima(sorted(names))
            self._known_limiters.update(dict.fromkeys(names, now))

    def config_op(self, queue: str) -> Op[QueueConfig]:
        """The queue's (cached) config; QueueNotFoundError if it was never created."""
        return (yield from self.reads.cached_op(queue))[1]

    def resolve_options(self, queue: str, config: QueueConfig, options: JobOptions | None,
                        fields: dict[str, Any]) -> JobOptions:
        """The queue's default options, overlaid by ``options`` and then by ``fields``."""
        plain = options is None and not fields
        if plain:
            cached = self._plain_options.get(queue)
            if cached is not None and cached[0] is config:
                return cached[1]  # JobOptions is frozen: one instance serves every such job
        merged = {
            **config.default_job_options.model_dump(exclude_unset=True),
            **(options.model_dump(exclude_unset=True) if options else {}),
            **fields,
        }
        if merged.get("max_retries") is None:
            merged["max_retries"] = self.settings.default_max_retries
        resolved = JobOptions(**merged)
        if plain:
            self._plain_options[queue] = (config, resolved)
        return resolved

    def bulk_items(self, queue: str, config: QueueConfig, jobs: Iterable[BulkJob | dict[str, Any]]) -> list[Item]:
        """Validate every item of an `enqueue_bulk` before any is written."""
        items: list[Item] = []
        for job in jobs:
            if type(job) is dict and job.keys() <= _PLAIN_BULK_KEYS and isinstance(job.get("name"), (str, type(None))):
                # fast path, same outcome as validating: data is Any, name a str or None, no options
                items.append((job.get("data"), job.get("name"), self.resolve_options(queue, config, None, {})))
                continue
            bulk = job if isinstance(job, BulkJob) else BulkJob.model_validate(job)
            items.append((bulk.data, bulk.name, self.resolve_options(queue, config, bulk.options, {})))
        return items

    @staticmethod
    def schedule_fields(options: ScheduleOptions | None, fields: dict[str, Any]) -> dict[str, Any]:
        """The job option fields of a `schedule_job` call (``run_at`` becomes a delay)."""
        merged = {**(options.model_dump(exclude_unset=True) if options else {}), **fields}
        schedule = ScheduleOptions(**merged)
        job_fields = schedule.model_dump(exclude_unset=True, exclude={"run_at"})
        if schedule.run_at is not None:
            job_fields["delay"] = max(0, to_ms(schedule.run_at) - now_ms())
        return job_fields

    def new_jobs(self, queue: str, items: list[Item], schedule_key: str = "", created_ms: int = 0) -> list[NewJob]:
        """Ids chosen, data encoded (InvalidJobDataError before anything is written)."""
        now = now_ms()
        default_name = self._default_name(queue) if any(not name for _, name, _ in items) else ""
        return [self.new_job(queue, data, name or default_name, opts, now, schedule_key, created_ms)
                for data, name, opts in items]

    def new_job(self, queue: str, data: Any, name: str | None, opts: JobOptions, now: int,
                schedule_key: str = "", created_ms: int = 0) -> NewJob:
        """A job ready to be written: id chosen, data encoded (size checked), name defaulted,
        dedup key resolved (a debounce job is due ttl_ms from now)."""
        data_json = encode_json(data, "data", self.settings.max_job_size)
        dedup = dedup_entry(opts.dedup, data) if opts.dedup is not None else None
        delay_ms = dedup.ttl_ms if dedup is not None and dedup.mode == "debounce" else opts.delay
        return NewJob(
            id=opts.job_id or str(uuid.uuid4()),
            name=name or self._default_name(queue),
            data_json=data_json,
            options=opts,
            due_ms=now + delay_ms if delay_ms else 0,
            schedule_key=schedule_key,
            created_ms=created_ms,
            # given at enqueue, or made here: 32 hex digits, a valid W3C trace-id
            trace_id=opts.trace_id or uuid.uuid4().hex,
            expires_ms=_deadline_ms(opts.expires, now) if opts.expires is not None else 0,
            dedup=dedup,
        )

    def snapshots_op(self, queue: str, items: list[Item], new_jobs: list[NewJob], added: list[Added],
                     created_at: datetime) -> Op[list[Job]]:
        """The `Job` of each item just enqueued; where one existed already, that job as it is;
        where its dedup key was held, the job that stands, marked ``deduplicated``."""
        # the jobs that were there already, read in one round trip
        there = [(was_added if isinstance(was_added, str) else new.id)
                 for was_added, new in zip(added, new_jobs) if was_added is not True]
        existing_jobs = iter((yield from self.ops.get_jobs_by_id(queue, there)))
        jobs = []
        for was_added, (data, _, opts), new in zip(added, items, new_jobs):
            standing = was_added if isinstance(was_added, str) else None
            if was_added is not True:
                existing = next(existing_jobs)
                if existing is not None:
                    existing.deduplicated = standing is not None
                    jobs.append(existing)
                    continue
            # added now; or (standing) a throttle's job finished and removed since: its outcome is gone
            jobs.append(Job(
                id=standing or new.id, queue=queue, name=new.name, data=data, options=opts,
                state=JobState.COMPLETED if standing else JobState.DELAYED if new.due_ms else JobState.WAITING,
                created_at=created_at, trace_id=new.trace_id, schedule_key=new.schedule_key or None,
                deduplicated=standing is not None,
            ))
        return jobs

    def add_op(self, queue: str, items: list[Item]) -> Op[list[Job]]:
        """Enqueue the items batch after batch, then build their snapshots."""
        yield from self.check_limits_op(items)
        new_jobs = self.new_jobs(queue, items)
        created_at = datetime.fromtimestamp(now_ms() / 1000, tz=timezone.utc)
        added = yield from self.ops.enqueue(queue, new_jobs)
        return (yield from self.snapshots_op(queue, items, new_jobs, added, created_at))

    def get_job_op(self, queue: str, job_id: str) -> Op[Job | None]:
        yield from self.config_op(queue)
        return (yield from self.ops.get_job(queue, job_id))

    def get_jobs_op(self, queue: str, states: Iterable[JobState | str] | JobState | str, start: int = 0,
                    end: int = -1, asc: bool = False) -> Op[list[Job]]:
        yield from self.config_op(queue)
        if isinstance(states, (str, JobState)):
            states = [states]
        return (yield from self.ops.get_jobs(queue, states, start, end, asc))

    def retry_op(self, queue: str, job_id: str) -> Op[bool]:
        yield from self.config_op(queue)
        return (yield from self.ops.retry(queue, job_id))

    def cancel_op(self, queue: str, job_id: str, terminate: bool, reason: str
                  ) -> Op[tuple[bool, str | None, str | None]]:
        """Cancel (a running job too); (cancelled, the Celery task id to stop now when the job
        was running and ``terminate`` asks for it, the job's state before)."""
        yield from self.config_op(queue)
        state, token = yield from self.ops.job_state_token(queue, job_id)
        cancelled = yield from self.ops.cancel(queue, job_id, allow_active=True, reason=str(reason)[:MAX_LOG_LINE])
        running = cancelled and terminate and state == JobState.ACTIVE.value
        return cancelled, task_id(job_id, int(token or 0)) if running else None, state

    def remove_op(self, queue: str, job_id: str) -> Op[bool]:
        """Delete a job that is not running: a waiting or delayed one is cancelled first (emits
        ``cancelled``), then the record and its logs go. An active job is left alone (False)."""
        yield from self.config_op(queue)
        state, _ = yield from self.ops.job_state_token(queue, job_id)
        if state is None:
            raise JobNotFoundError(queue, job_id)
        if state in (JobState.WAITING.value, JobState.DELAYED.value):
            yield from self.ops.cancel(queue, job_id)
        return (yield from self.ops.remove(queue, job_id))

    def wait_op(self, queue: str, job_id: str, timeout: float) -> Op[Job]:
        """Until the job is completed, failed or cancelled, woken by the queue's events (XREAD
        BLOCK); TimeoutError after ``timeout`` s."""
        yield from self.config_op(queue)
        deadline = time.monotonic() + timeout
        while True:
            job, last_id = yield from self.ops.get_job_after_event(queue, job_id)
            if job is None:
                raise JobNotFoundError(queue, job_id)
            if job.state.is_final:
                return job
            while True:
                left_ms = int((deadline - time.monotonic()) * 1000)
                if left_ms <= 0:
                    raise WaitTimeoutError(f"job {job_id!r} of queue {queue!r} not finished after {timeout} s")
                block_ms = max(1, min(left_ms, WAIT_BLOCK_MS, int(self.settings.socket_timeout_s * 500)))
                events = yield from self.ops.read_events(queue, last_id, block_ms=block_ms)
                if not events:
                    break  # re-read the job now and then, in case the stream was trimmed
                last_id = events[-1][0]
                if any(is_final_event(fields, job_id) for _, fields in events):
                    break


def _deadline_ms(expires: int | datetime, now: int) -> int:
    """A job's start deadline (epoch ms): ``expires`` ms after enqueue, or the time given."""
    return to_ms(expires) if isinstance(expires, datetime) else now + expires


class JobScheduler:
    """Writes jobs to the registry (which dispatches them to Celery) and controls them."""

    def __init__(self, registry: Registry, queues: QueueManager, settings: Settings, app: Celery,
                 default_name: Callable[[str], str]) -> None:
        self.registry = registry
        self.queues = queues
        self.settings = settings
        self.app = app
        self.plans = JobPlans(registry.ops, queues.reads, settings, default_name)

    # ----------------------------------------------------------------------------- enqueue

    def enqueue_job(self, queue: str, data: Any, options: JobOptions | None = None, *,
                    name: str | None = None, **option_fields: Any) -> Job:
        """Add one job; with ``job_id`` of an existing job, return that job and write nothing."""
        return self._add(queue, [(data, name, self.resolve_options(queue, options, option_fields))])[0]

    def enqueue_bulk(self, queue: str, jobs: Iterable[BulkJob | dict[str, Any]]) -> list[Job]:
        """Add many jobs, each batch in one round trip; all are validated before any is written."""
        return self._add(queue, self.plans.bulk_items(queue, self.queues.cached_config(queue), jobs))

    def schedule_job(self, queue: str, job_name: str, data: Any, options: ScheduleOptions | None = None,
                     **fields: Any) -> Job:
        """Add a job that starts after ``delay`` ms or at ``run_at``."""
        job_fields = self.plans.schedule_fields(options, fields)
        return self._add(queue, [(data, job_name, self.resolve_options(queue, None, job_fields))])[0]

    def enqueue_run(self, queue: str, name: str, data: Any, options: JobOptions, schedule_key: str,
                    created_ms: int) -> Job:
        """Add one run of a recurring job, created at its tick's time and linked to its schedule."""
        return self._add(queue, [(data, name, options)], schedule_key=schedule_key, created_ms=created_ms)[0]

    def resolve_options(self, queue: str, options: JobOptions | None, fields: dict[str, Any]) -> JobOptions:
        """The queue's default options, overlaid by ``options`` and then by ``fields``."""
        return self.plans.resolve_options(queue, self.queues.cached_config(queue), options, fields)

    def new_job(self, queue: str, data: Any, name: str | None, opts: JobOptions, now: int,
                schedule_key: str = "", created_ms: int = 0) -> NewJob:
        """A job ready to be written: id chosen, data encoded (size checked), name defaulted."""
        return self.plans.new_job(queue, data, name, opts, now, schedule_key, created_ms)

    def _add(self, queue: str, items: list[Item], schedule_key: str = "", created_ms: int = 0) -> list[Job]:
        self.registry.run(self.plans.check_limits_op(items))
        new_jobs = self.plans.new_jobs(queue, items, schedule_key, created_ms)
        created_at = datetime.fromtimestamp((created_ms or now_ms()) / 1000, tz=timezone.utc)
        jobs: list[Job] = []
        done = 0
        # the snapshots of one batch are built while Redis runs the next one
        for added in self.registry.enqueue_batches(queue, new_jobs):
            end = done + len(added)
            jobs += self.registry.run(self.plans.snapshots_op(queue, items[done:end], new_jobs[done:end],
                                                              added, created_at))
            done = end
        return jobs

    # ----------------------------------------------------------------------------- reads

    def get_job(self, queue: str, job_id: str) -> Job | None:
        return self.registry.run(self.plans.get_job_op(queue, job_id))

    def get_jobs(self, queue: str, states: Iterable[JobState | str] | JobState | str, start: int = 0,
                 end: int = -1, asc: bool = False) -> list[Job]:
        """Jobs in the given states, newest first; ``start``/``end`` inclusive as in Redis."""
        return self.registry.run(self.plans.get_jobs_op(queue, states, start, end, asc))

    def get_failed_jobs(self, queue: str, start: int = 0, end: int = -1) -> list[Job]:
        return self.get_jobs(queue, [JobState.FAILED], start, end)

    def wait_for_job(self, queue: str, job_id: str, timeout: float) -> Job:
        """Block until the job is completed, failed or cancelled; `WaitTimeoutError` (a `TimeoutError`)
        after ``timeout`` s."""
        return self.registry.run(self.plans.wait_op(queue, job_id, timeout))

    # ----------------------------------------------------------------------------- control

    def retry_job(self, queue: str, job_id: str) -> bool:
        """Run a failed or cancelled job again with a fresh set of retries."""
        self.queues.cached_config(queue)
        return self.registry.retry(queue, job_id)

    def cancel_job(self, queue: str, job_id: str, terminate: bool = False, reason: str = "cancelled") -> bool:
        """Cancel a waiting, delayed or active job; it ends ``cancelled`` with ``reason`` at once.
        A running attempt is asked to stop (``job.is_cancelled()``), within a second on any host,
        and interrupted after the worker's ``cancel_grace_ms``; with ``terminate`` a prefork
        process running it is ended now. False if the job had already finished."""
        cancelled, running_task, _ = self.registry.run(self.plans.cancel_op(queue, job_id, terminate, reason))
        if running_task is not None:
            self.app.control.revoke(running_task, terminate=True, signal="SIGTERM")
        return cancelled

    def remove_job(self, queue: str, job_id: str) -> bool:
        """Delete a job that is not running: a waiting or delayed one is cancelled first (emits
        ``cancelled``), then the record and its logs go. An active job is left alone (False)."""
        return self.registry.run(self.plans.remove_op(queue, job_id))

    def update_job_priority(self, queue: str, job_id: str, priority: int) -> bool:
        """Change the priority of a waiting or delayed job (1 highest .. 10 lowest)."""
        JobOptions(priority=priority)
        self.queues.cached_config(queue)
        return self.registry.change_priority(queue, job_id, priority)

    def promote_job(self, queue: str, job_id: str) -> bool:
        """Make a delayed job waiting now."""
        self.queues.cached_config(queue)
        return self.registry.promote(queue, job_id)
