"""Options the caller passes in. Every model forbids unknown fields, so a typo names the field."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from coordinator.validation import (
    MAX_JOB_LIMITS,
    check_cron,
    check_group_name,
    check_job_id,
    check_queue_name,
    check_trace_id,
    check_zone,
)


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Backoff(_Options):
    """Wait between attempts: ``fixed`` is always ``delay`` ms; ``exponential`` doubles each time."""

    type: Literal["fixed", "exponential"] = "exponential"
    delay: int = Field(2000, ge=0, description="ms")

    def delay_ms(self, attempts_made: int) -> int:
        """The wait before the next attempt, after ``attempts_made`` attempts (1 or more)."""
        if self.type == "fixed":
            return self.delay
        return self.delay * 2 ** max(attempts_made - 1, 0)


class RateLimit(_Options):
    """At most ``max`` jobs of the queue start in any window of ``duration`` ms, across all workers."""

    max: int = Field(..., ge=1)
    duration: int = Field(..., ge=1, description="ms")


Removal = bool | int

#: Longest dedup key given by the caller (a derived key is 64 hex digits).
MAX_DEDUP_KEY = 200
DedupMode = Literal["until_finished", "ttl", "debounce"]


class Dedup(_Options):
    """Deduplication of a job (docs/deduplication.md): while a job holds the key, another enqueue
    with the same key in the same queue adds nothing and returns the job that stands.

    ``key`` is given, or derived from the values of ``fields`` of the job's data (exactly one).
    ``mode``: ``until_finished`` (the key stands until the job completes, fails for good or is
    cancelled; with ``ttl_ms`` it also lapses after that long), ``ttl`` (throttle: the key stands
    ``ttl_ms`` from the enqueue that took it, whatever becomes of the job), ``debounce`` (the job
    starts ``ttl_ms`` after the last enqueue with the key: each one before it starts pushes the
    start back and, with ``keep="last"``, replaces its data).
    """

    key: str | None = Field(None, min_length=1, max_length=MAX_DEDUP_KEY)
    fields: list[str] | None = Field(None, min_length=1, max_length=32)
    mode: DedupMode = "until_finished"
    ttl_ms: int | None = Field(None, gt=0, description="ms; required for ttl and debounce")
    keep: Literal["last", "first"] = Field(
        "last", description="debounce: whose data the standing job runs with, the last enqueue's or the first's")

    @field_validator("key")
    @classmethod
    def _printable_key(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or not value.isprintable()):
            raise ValueError("key: must be printable text, not blank")
        return value

    @field_validator("fields")
    @classmethod
    def _distinct_fields(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (any(not name for name in value) or len(set(value)) != len(value)):
            raise ValueError("fields: names must be non-empty and distinct")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Dedup:
        if (self.key is None) == (self.fields is None):
            raise ValueError("key, fields: give exactly one of key or fields")
        if self.mode != "until_finished" and self.ttl_ms is None:
            raise ValueError(f"ttl_ms: required with mode {self.mode!r}")
        if self.keep != "last" and self.mode != "debounce":
            raise ValueError("keep: only with mode 'debounce'")
        return self


class JobOptions(_Options):
    """Per-job options; unset fields fall back to the queue's ``default_job_options``."""

    priority: int = Field(5, ge=1, le=10, description="1 is the highest, 10 the lowest")
    max_retries: int | None = Field(
        None, ge=0, le=1000, description="retries after the first attempt; None: MAX_JOB_RETRIES or 3"
    )
    backoff: Backoff = Backoff()
    delay: int = Field(0, ge=0, description="ms before the job may start")
    job_id: str | None = None
    timeout: float | None = Field(None, gt=0, description="s; the attempt is stopped and fails")
    remove_on_complete: Removal = False
    remove_on_fail: Removal = False
    trace_id: str | None = None
    expires: int | datetime | None = Field(
        None, description="start deadline: ms after enqueue, or a timezone-aware time; an attempt "
        "not started by then is cancelled with reason 'expired' and never runs"
    )
    dedup: Dedup | None = Field(None, description="deduplication key and mode (docs/deduplication.md)")

    group: str | None = Field(None, description="the job's group: a queue serves its groups round-robin "
                              "(see docs/fairness.md)")
    limits: tuple[str, ...] = Field((), description="named limiters (set_limiter) the job holds a slot of "
                                    "while it runs")

    _check_job_id = field_validator("job_id")(check_job_id)
    _check_trace_id = field_validator("trace_id")(check_trace_id)

    @field_validator("group")
    @classmethod
    def _check_group(cls, value: str | None) -> str | None:
        return None if value is None else check_group_name(value, "group")

    @field_validator("limits", mode="before")
    @classmethod
    def _check_limits(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError("limits: give a list of limiter names, not one string")
        names = tuple(value)
        if len(names) > MAX_JOB_LIMITS:
            raise ValueError(f"limits: at most {MAX_JOB_LIMITS} limiters per job")
        if len(set(names)) != len(names):
            raise ValueError("limits: a limiter is named twice")
        for name in names:
            check_group_name(name, "limits")
        return names

    @field_validator("expires", mode="before")
    @classmethod
    def _check_expires(cls, value: Any) -> Any:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"expires: give whole ms (an int > 0) or a timezone-aware datetime, not {value!r}")
        return int(value) if isinstance(value, float) else value

    @field_validator("expires")
    @classmethod
    def _expires_in_range(cls, value: int | datetime | None) -> int | datetime | None:
        if isinstance(value, datetime) and value.tzinfo is None:
            raise ValueError("expires: a datetime must be timezone-aware")
        if isinstance(value, int) and value <= 0:
            raise ValueError("expires: ms must be > 0")
        return value

    @field_validator("remove_on_complete", "remove_on_fail")
    @classmethod
    def _non_negative(cls, value: Removal) -> Removal:
        if not isinstance(value, bool) and value < 0:
            raise ValueError("must be True, False or a count >= 0")
        return value

    @model_validator(mode="after")
    def _debounce_without_delay(self) -> JobOptions:
        if self.dedup is not None and self.dedup.mode == "debounce" and self.delay:
            raise ValueError("delay: not with dedup mode 'debounce' (its ttl_ms is the delay)")
        if self.dedup is not None and self.dedup.mode == "debounce" and self.group is not None:
            raise ValueError("group: not with dedup mode 'debounce' (a debounce moves a waiting job back "
                             "to delayed, which a job waiting in its group cannot follow)")
        return self


class ScheduleOptions(JobOptions):
    """Options of `schedule_job`: a ``delay`` in ms or a ``run_at`` time, not both."""

    run_at: datetime | None = None

    @model_validator(mode="after")
    def _one_of_delay_and_run_at(self) -> ScheduleOptions:
        if self.run_at is not None and self.delay:
            raise ValueError("run_at: give either delay or run_at, not both")
        if self.run_at is not None and self.run_at.tzinfo is None:
            raise ValueError("run_at: must be timezone-aware")
        return self


#: Longest schedule key: the id of each run, ``rep:<key>:<tick ms>``, must stay a valid job id.
MAX_SCHEDULE_KEY = 180
#: The fields of `RecurringJobOptions` that describe the schedule, not the jobs it creates.
RECURRING_ONLY_FIELDS = frozenset({
    "cron", "every", "tz", "limit", "start_date", "end_date", "key",
    "overlap", "misfire", "misfire_window_ms", "pause_after_failures", "jitter_ms",
})
#: Most runs `backfill_recurring_job` creates in one call.
MAX_BACKFILL_RUNS = 10_000


class RecurringJobOptions(JobOptions):
    """Options of `schedule_recurring_job`: ``cron`` (5 fields) or ``every`` (ms), not both.

    The JobOptions fields apply to every run; ``job_id`` is not allowed (each run's id is
    ``rep:<key>:<tick ms>``). Dates must be timezone-aware; ``tz`` is the zone cron is read in.
    """

    cron: str | None = None
    every: int | None = Field(None, gt=0, description="ms between runs")
    tz: str = "UTC"
    limit: int | None = Field(None, ge=1, description="stop after this many runs")
    start_date: datetime | None = None
    end_date: datetime | None = None
    key: str | None = Field(None, max_length=MAX_SCHEDULE_KEY)
    overlap: Literal["allow", "skip", "buffer_one", "cancel_previous"] = Field(
        "allow", description="a tick while the previous run is waiting or active: run anyway, skip it, keep it "
        "until the previous run ends (one at most), or cancel the previous run")
    misfire: Literal["skip", "latest", "all"] = Field(
        "latest", description="ticks missed while no beat ran: none of them, one run for the latest, or one "
        "run per tick within misfire_window_ms")
    misfire_window_ms: int = Field(60_000, ge=1, description="skip: how late a tick may still run; all: how "
                                   "far back missed ticks are run")
    pause_after_failures: int | None = Field(None, ge=1, description="pause the schedule after this many "
                                             "runs in a row failed")
    jitter_ms: int = Field(0, ge=0, description="each run starts after a random delay below this")

    _check_key = field_validator("key")(check_job_id)
    _check_cron = field_validator("cron")(check_cron)
    _check_tz = field_validator("tz")(check_zone)

    @model_validator(mode="after")
    def _consistent(self) -> RecurringJobOptions:
        if (self.cron is None) == (self.every is None):
            raise ValueError("cron, every: give exactly one of cron (5 fields) or every (ms)")
        if self.job_id is not None:
            raise ValueError("job_id: not allowed for recurring jobs; each run's id is rep:<key>:<tick ms>")
        for name in ("start_date", "end_date"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name}: must be timezone-aware")
        if self.start_date and self.end_date and self.end_date <= self.start_date:
            raise ValueError("end_date: must be after start_date")
        return self


class Retention(_Options):
    """How many finished jobs a queue keeps, and for how long (the newest are kept)."""

    completed_count: int = Field(1000, ge=0)
    completed_age_s: int | None = Field(24 * 3600, ge=1)
    failed_count: int = Field(10_000, ge=0)
    failed_age_s: int | None = Field(7 * 24 * 3600, ge=1)


class GroupConfig(_Options):
    """Limits of one group of a queue (`set_group_config`); see docs/fairness.md."""

    concurrency: int | None = Field(None, ge=1, description="at most this many of the group's jobs "
                                    "dispatched or running at once, across every host")
    limiter: RateLimit | None = Field(None, description="at most max of the group's jobs released per "
                                      "fixed window of duration ms")
    max_size: int | None = Field(None, ge=1, description="enqueueing past this many waiting jobs of the "
                                 "group raises GroupFullError and writes nothing")
    weight: int = Field(1, ge=1, le=1000, description="share of the round-robin: a group of weight 3 is "
                        "served three jobs for one of a group of weight 1")


class QueueConfig(_Options):
    """A queue's configuration; `create_queue` with the same name and a new config updates it."""

    name: str
    default_job_options: JobOptions = JobOptions()
    limiter: RateLimit | None = None
    retention: Retention = Retention()
    concurrency: int | None = Field(None, ge=1, description="at most this many of the queue's jobs active "
                                    "at once across every host (None: no cap)")
    group_window: int = Field(32, ge=1, le=10_000, description="grouped jobs put in the broker and not yet "
                              "started, at most: the round-robin decides the order of everything behind it")

    _check_name = field_validator("name")(check_queue_name)


class BulkJob(_Options):
    """One job of `enqueue_bulk`."""

    data: Any = None
    name: str | None = None
    options: JobOptions | None = None


class WorkerOptions(_Options):
    """How a managed `celery worker` process runs."""

    concurrency: int | None = Field(None, ge=1, le=512, description="None: WORKER_CONCURRENCY or 2")
    autoscale: tuple[int, int] | None = Field(None, description="(max, min) processes, Celery's --autoscale")
    limiter: RateLimit | None = None
    pool: Literal["prefork", "threads", "solo"] = "prefork"
    prefetch_multiplier: int = Field(4, ge=1, le=1000, description="messages each process holds (Celery's "
                                     "--prefetch-multiplier); 1: strict priorities, fewer jobs per second")
    embed_beat: bool = Field(True, description="run a beat in the worker (`celery worker -B`) so recurring jobs "
                             "fire with no separate beat; any number of them is safe (one holds the lock)")
    max_restarts: int = Field(5, ge=0, description="restarts in a row after unexpected deaths before giving up")
    detached: bool = Field(False, description="keep running when the process that started it is gone (for "
                           "workers under another supervisor); by default a managed worker stops then")

    @field_validator("autoscale")
    @classmethod
    def _max_at_least_min(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not (1 <= value[1] <= value[0]):
            raise ValueError("autoscale: must be (max, min) with 1 <= min <= max")
        return value


class AutoscalePolicy(_Options):
    """Queue-depth auto-scaling of a queue's managed workers (``set_autoscale_policy``).

    Every ``interval_s`` the managing process wants ceil((waiting + active) / ``jobs_per_worker``)
    workers, bounded by ``min_workers`` and ``max_workers``, and scales to that; after a change
    it waits ``cooldown_s`` before the next one.
    """

    min_workers: int = Field(0, ge=0)
    max_workers: int = Field(..., ge=1, le=64)
    jobs_per_worker: int = Field(10, ge=1, description="waiting + active jobs per worker that trigger a step")
    cooldown_s: float = Field(30.0, ge=0)
    interval_s: float = Field(1.0, gt=0, description="how often the policy looks at the queue")
    worker_options: WorkerOptions | None = Field(None, description="options of the workers it starts")

    @model_validator(mode="after")
    def _min_at_most_max(self) -> AutoscalePolicy:
        if self.min_workers > self.max_workers:
            raise ValueError("min_workers: must be <= max_workers")
        return self


class BackfillRange(_Options):
    """The ticks `backfill_recurring_job` runs: those in [start, end], timezone-aware."""

    start: datetime
    end: datetime

    @model_validator(mode="after")
    def _ordered(self) -> BackfillRange:
        for name in ("start", "end"):
            if getattr(self, name).tzinfo is None:
                raise ValueError(f"{name}: must be timezone-aware")
        if self.end < self.start:
            raise ValueError("end: must not be before start")
        return self
