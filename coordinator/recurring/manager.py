"""RecurringManager: recurring jobs (cron in a zone, or every N ms) kept as redbeat entries.

Scheduling writes one hash per (queue, key) and indexes it in redbeat's schedule; any beat
of the prefix sees it on its next loop. When a beat fires a tick it calls `fire`, which claims
the tick and enqueues an ordinary job ``rep:<key>:<tick ms>`` created at the tick's time.
"""

from __future__ import annotations

import hashlib
import json
import random
from datetime import datetime, timezone
from typing import Any

import redis

from coordinator.errors import InvalidJobDataError, QueueNotFoundError
from coordinator.keys import CoordinatorKeys
from coordinator.models import Job, RecurringJob, RecurringJobOptions
from coordinator.models.options import MAX_BACKFILL_RUNS, RECURRING_ONLY_FIELDS, BackfillRange
from coordinator.queues import QueueManager
from coordinator.recurring.entry import encode, last_run_at, meta_json, script
from coordinator.recurring.policies import RunPolicies
from coordinator.recurring.ticks import TickSchedule
from coordinator.registry.codec import from_ms, to_ms
from coordinator.scheduler import JobScheduler
from coordinator.settings import Settings
from coordinator.validation import encode_json

#: Ticks whose outcome each schedule remembers (a beat that fires a tick later than this
#: many newer ticks would be trusted to the job id alone).
RECENT_TICKS = 32
#: What `fire` reports when the schedule will fire no more.
STOPPED = frozenset({"removed", "limit", "last"})


def run_id(key: str, tick_ms: int) -> str:
    """The job id of the run of schedule ``key`` at ``tick_ms``: the same for every beat."""
    return f"rep:{key}:{tick_ms}"


def default_key(queue: str, job_name: str, options: RecurringJobOptions) -> str:
    """The key of a schedule given without one: a digest of queue, job name, pattern and zone,
    so scheduling the same thing twice updates one schedule."""
    pattern = options.cron if options.cron is not None else f"every {options.every}"
    digest = hashlib.sha1("\0".join((queue, job_name, pattern, options.tz)).encode()).hexdigest()
    return f"auto-{digest[:24]}"


def tick_schedule(options: RecurringJobOptions) -> TickSchedule:
    return TickSchedule(
        cron=options.cron, every=options.every, tz=options.tz,
        start_ms=to_ms(options.start_date) if options.start_date else None,
        end_ms=to_ms(options.end_date) if options.end_date else None,
    )


class RecurringManager:
    """Schedules, lists and removes recurring jobs; `fire` turns one tick into one job."""

    def __init__(self, client: redis.Redis, keys: CoordinatorKeys, queues: QueueManager, jobs: JobScheduler,
                 settings: Settings) -> None:
        self.redis = client
        self.keys = keys
        self.queues = queues
        self.jobs = jobs
        self.settings = settings
        self._tick = script(client, "tick")
        self.policies = RunPolicies(client, jobs, self._tick, RECENT_TICKS)

    def schedule_recurring_job(self, queue: str, job_name: str, data: Any,
                               options: RecurringJobOptions | None = None, **fields: Any) -> RecurringJob:
        """Create the schedule, or update the one with the same key (its next runs use the new
        data and pattern; run count and last run are kept). Everything is checked first."""
        merged = {**(options.model_dump(exclude_unset=True) if options else {}), **fields}
        opts = RecurringJobOptions(**merged)
        if not isinstance(job_name, str) or not job_name:
            raise InvalidJobDataError(f"job_name: {job_name!r} must be a non-empty string")
        self.queues.cached_config(queue)
        data_json = encode_json(data, "data", self.settings.max_job_size)
        key = opts.key or default_key(queue, job_name, opts)
        self.jobs.resolve_options(queue, None, self._job_fields(opts, key, 0))  # the runs' options are valid
        schedule = tick_schedule(opts)
        entry_key = self.keys.beat_entry(queue, key)
        now = datetime.now(timezone.utc)
        meta, runs = self.redis.hmget(entry_key, "meta", "runs")
        exhausted = opts.limit is not None and int(runs or 0) >= opts.limit
        next_run = None if exhausted else schedule.next_tick(last_run_at(meta) or now)
        definition = encode({
            "name": self.keys.beat_entry_name(queue, key), "task": self.keys.recurring_task,
            "args": [], "kwargs": {"queue": queue, "key": key}, "options": {}, "schedule": schedule,
            "enabled": True,
        })
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(entry_key, mapping={
            "definition": definition, "queue": queue, "key": key, "name": job_name, "data": data_json,
            "opts": opts.model_dump_json(exclude_unset=True), "limit": opts.limit or "",
        })
        pipe.hsetnx(entry_key, "meta", meta_json(now))
        pipe.hsetnx(entry_key, "runs", 0)
        pipe.hincrby(entry_key, "revision", 1)
        pipe.zadd(self.keys.beat_schedule, {entry_key: -1 if next_run is None else int(next_run.timestamp())})
        pipe.hgetall(entry_key)
        return self._snapshot(pipe.execute()[-1])

    def get_recurring_jobs(self, queue: str | None = None) -> list[RecurringJob]:
        """Every schedule (of one queue, or of all), with its next run, last run and run count."""
        if queue is not None:
            self.queues.cached_config(queue)
        entries = self._entries()
        return [self._snapshot(fields) for fields in entries if queue is None or fields["queue"] == queue]

    def remove_recurring_job(self, queue: str, key: str) -> bool:
        """Delete the schedule; no beat fires it again. False if there was none."""
        self.queues.cached_config(queue)
        return self._delete(self.keys.beat_entry(queue, key))

    def beat_lock_ttl_ms(self) -> int:
        """How much longer the beat that leads holds the lock (ms); 0 when no beat holds it."""
        return max(0, int(self.redis.pttl(self.keys.beat_lock)))

    def remove_queue(self, queue: str) -> int:
        """Delete every schedule of a queue (the queue is being deleted)."""
        return sum(self._delete(self.keys.beat_entry(queue, fields["key"]))
                   for fields in self._entries() if fields["queue"] == queue)

    # ----------------------------------------------------------------------------- firing

    def fire(self, queue: str, key: str, tick_ms: int) -> str:
        """Enqueue the run of one tick, at most once however often it is called for that tick,
        and the runs of earlier ticks that were claimed but never enqueued (their beat died).

        Returns ``claimed`` (enqueued), ``again`` (claimed before, enqueued now or found),
        ``done`` (enqueued before), ``last`` (enqueued, and the limit is reached), ``limit``,
        ``removed`` or ``paused`` (nothing enqueued), ``skipped`` or ``buffered`` (the overlap
        policy held the run back; see `policies`).
        """
        entry_key = self.keys.beat_entry(queue, key)
        reply = self._tick(keys=[entry_key], args=["claim", tick_ms, RECENT_TICKS])
        status = reply[0]
        if status in ("removed", "done", "limit", "paused"):
            return status
        runs, limit, name, data_json, opts_json, *pending = reply[1:]
        opts = RecurringJobOptions.model_validate_json(opts_json)
        buffered = self.policies.buffered_tick(entry_key)
        try:
            for tick in (int(t) for t in pending if int(t) != buffered):  # older claims first: their beat died
                self._enqueue_run(queue, key, name, data_json, opts, tick)
            if (buffered and tick_ms != buffered and status == "claimed"  # the kept tick goes first
                    and self.policies.decide(queue, entry_key, opts, buffered, buffered) == "run"):
                self._enqueue_run(queue, key, name, data_json, opts, buffered)
                buffered = 0
            if status == "claimed" or tick_ms == buffered:
                decision = self.policies.decide(queue, entry_key, opts, tick_ms, buffered)
                if decision != "run":
                    return decision
            self._enqueue_run(queue, key, name, data_json, opts, tick_ms)
        except QueueNotFoundError:
            self._delete(entry_key)  # the queue was deleted: so is its schedule
            return "removed"
        return "last" if limit and runs >= limit else status

    def _enqueue_run(self, queue: str, key: str, name: str, data_json: str, opts: RecurringJobOptions,
                     tick: int) -> Job:
        options = self.jobs.resolve_options(queue, None, self._job_fields(opts, key, tick))
        job = self.jobs.enqueue_run(queue, name, json.loads(data_json), options, key, tick)
        entry_key = self.keys.beat_entry(queue, key)
        self._tick(keys=[entry_key], args=["done", tick, RECENT_TICKS])
        self.policies.ran(entry_key, job.id)
        return job

    def pause_recurring_job(self, queue: str, key: str) -> bool:
        """Stop firing the schedule until `resume_recurring_job`; ticks meanwhile create no
        job and are not caught up. False if there is no such schedule."""
        self.queues.cached_config(queue)
        return self.policies.set_paused(self.keys.beat_entry(queue, key), True)

    def resume_recurring_job(self, queue: str, key: str) -> bool:
        """Fire the schedule again from its next tick (and reset its failure count)."""
        self.queues.cached_config(queue)
        entry_key = self.keys.beat_entry(queue, key)
        if not self.policies.set_paused(entry_key, False):
            return False
        fields = self.redis.hgetall(entry_key)
        if fields.get("opts"):
            now = datetime.now(timezone.utc)
            next_run = tick_schedule(RecurringJobOptions.model_validate_json(fields["opts"])).next_tick(now)
            pipe = self.redis.pipeline(transaction=True)
            pipe.hset(entry_key, "meta", meta_json(now))  # the paused ticks are not missed ones
            pipe.zadd(self.keys.beat_schedule, {entry_key: -1 if next_run is None else int(next_run.timestamp())})
            pipe.execute()
        return True

    def backfill_recurring_job(self, queue: str, key: str, start: datetime, end: datetime) -> list[Job]:
        """One run for each tick of the schedule in [start, end], oldest first; a tick that has
        a run already (fired, or backfilled before) keeps it and gets no second one. Runs even
        while the schedule is paused, and whatever its overlap policy; not counted in ``limit``."""
        span = BackfillRange(start=start, end=end)
        self.queues.cached_config(queue)
        entry_key = self.keys.beat_entry(queue, key)
        name, data_json, opts_json = self.redis.hmget(entry_key, "name", "data", "opts")
        if not opts_json:
            raise InvalidJobDataError(f"key: no recurring job {key!r} in queue {queue!r}")
        opts = RecurringJobOptions.model_validate_json(opts_json)
        ticks = tick_schedule(opts).ticks_between(span.start, span.end, MAX_BACKFILL_RUNS + 1)
        if len(ticks) > MAX_BACKFILL_RUNS:
            raise InvalidJobDataError(f"end: more than {MAX_BACKFILL_RUNS} ticks between start and end")
        jobs = []
        for tick in ticks:
            options = self.jobs.resolve_options(queue, None, self._job_fields(opts, key, to_ms(tick)))
            jobs.append(self.jobs.enqueue_run(queue, name, json.loads(data_json), options, key, to_ms(tick)))
        return jobs

    @staticmethod
    def _job_fields(opts: RecurringJobOptions, key: str, tick_ms: int) -> dict[str, Any]:
        fields = opts.model_dump(exclude_unset=True, exclude=set(RECURRING_ONLY_FIELDS))
        fields["job_id"] = run_id(key, tick_ms)
        if opts.jitter_ms:
            fields["delay"] = fields.get("delay", 0) + random.randrange(opts.jitter_ms)
        return fields

    # ----------------------------------------------------------------------------- storage

    def _entries(self) -> list[dict[str, str]]:
        """The fields of every recurring job of the prefix (not an adopted app's own entries)."""
        entry_keys = self.redis.zrange(self.keys.beat_schedule, 0, -1)
        pipe = self.redis.pipeline(transaction=False)
        for entry_key in entry_keys:
            pipe.hgetall(entry_key)
        entries = [fields for fields in pipe.execute() if fields.get("opts") and fields.get("queue")]
        return sorted(entries, key=lambda fields: (fields["queue"], fields["key"]))

    def _delete(self, entry_key: str) -> bool:
        pipe = self.redis.pipeline(transaction=True)
        pipe.zrem(self.keys.beat_schedule, entry_key)
        pipe.delete(entry_key)
        return pipe.execute()[1] == 1

    def _snapshot(self, fields: dict[str, str]) -> RecurringJob:
        opts = RecurringJobOptions.model_validate_json(fields["opts"])
        runs = int(fields.get("runs") or 0)
        last_tick = int(fields["last_tick"]) if fields.get("last_tick") else None
        exhausted = opts.limit is not None and runs >= opts.limit
        after = last_run_at(fields.get("meta")) or datetime.now(timezone.utc)
        return RecurringJob(
            key=fields["key"], queue=fields["queue"], name=fields["name"], data=json.loads(fields["data"]),
            cron=opts.cron, every=opts.every, tz=opts.tz, limit=opts.limit, start_date=opts.start_date,
            end_date=opts.end_date, next_run=None if exhausted else tick_schedule(opts).next_tick(after),
            last_run=from_ms(last_tick) if last_tick else None, run_count=runs,
            paused=fields.get("paused") == "1", overlap=opts.overlap, misfire=opts.misfire,
            consecutive_failures=int(fields.get("failures") or 0),
        )
