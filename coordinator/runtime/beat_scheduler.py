"""The beat's scheduler: redbeat's, firing each tick of a recurring job once.

redbeat keeps the schedule in Redis, so an entry added, changed or removed at run time is seen
on the beat's next loop (at most ``beat_max_interval_s`` later), and lets one beat at a time
fire, under a lock with a short timeout: a standby takes over within ``beat_lock_timeout_s``
plus one loop. On top of redbeat, for the coordinator's entries:

- A due entry fires its latest tick: ticks missed while no beat ran collapse into one run, and
  the tick's time (not the beat's clock) names the job, so two beats firing one tick (a lock
  that expired under a stalled leader) still create one job.
- The fire task runs in the beat process, a local call rather than a broker message: the run is
  in the registry at its tick whether or not a worker consumes the queue, or the queue is paused.
- A lost lock makes the beat a standby again instead of crashing it, a Redis error skips one
  loop instead of ending the beat, and an embedded beat exits when its worker is gone.

Entries that are not recurring jobs (an adopted app's own ``beat_schedule``) run as in redbeat.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import redis
from celery import Celery
from celery.signals import beat_embedded_init
from redbeat.schedulers import RedBeatScheduler, get_redis
from redis.exceptions import LockError

from coordinator.connection import tls_options
from coordinator.errors import RedisUnavailableError
from coordinator.keys import CoordinatorKeys
from coordinator.recurring.entry import RecurringEntry
from coordinator.recurring.manager import STOPPED
from coordinator.registry.codec import from_ms, to_ms
from coordinator.settings import Settings

log = logging.getLogger("celery.beat")

#: How often the beat looks at a tick kept by the ``buffer_one`` overlap policy.
BUFFER_POLL_S = 1.0
#: Most missed ticks one loop runs under ``misfire="all"`` (the rest of the window is dropped).
MAX_CATCH_UP_TICKS = 1000
#: The value of Celery's ``beat_scheduler`` for a coordinator's app.
SCHEDULER = "coordinator.runtime.beat_scheduler:CoordinatorScheduler"


def configure_beat(app: Celery, settings: Settings, fire: Callable[[str, str, int], str]) -> None:
    """Point the app's beat at the coordinator's redbeat schedule and register the fire task."""
    keys = CoordinatorKeys(settings.prefix)
    app.conf.update(
        beat_scheduler=SCHEDULER,
        beat_max_loop_interval=settings.beat_max_interval_s,
        redbeat_redis_url=settings.url,
        redbeat_key_prefix=keys.beat_key_prefix,
        redbeat_lock_key=keys.beat_lock,
        redbeat_lock_timeout=settings.beat_lock_timeout_s,
        redbeat_redis_options={
            "socket_timeout": settings.socket_timeout_s,
            "socket_connect_timeout": settings.socket_timeout_s,
            "health_check_interval": 30,
        },
        # rediss://: the registry's certificate checks (redbeat's default is CERT_REQUIRED, no CA).
        redbeat_redis_use_ssl=tls_options(settings) or None,
    )
    sentinel = settings.sentinel_target(settings.url)
    if sentinel is not None:  # redbeat asks the sentinels for the master, again after a failover
        app.conf.update(redbeat_redis_url="redis-sentinel://", redbeat_redis_options=dict(
            app.conf.redbeat_redis_options, **sentinel.redbeat_options(settings.socket_timeout_s)))

    def fire_tick(queue: str, key: str, tick_ms: int) -> str:
        return fire(queue, key, tick_ms)

    fire_tick.__doc__ = "Enqueue the run of one tick of a recurring job (once per tick)."
    app.task(fire_tick, name=keys.recurring_task, ignore_result=True, typing=False)


class CoordinatorScheduler(RedBeatScheduler):
    """redbeat's scheduler with once-per-tick firing of recurring jobs (see the module text)."""

    Entry = RecurringEntry

    #: pid of the worker an embedded beat runs in (set on start); None for a beat of its own.
    parent_pid: int | None = None
    #: redbeat's lock while this beat holds it (redis-py's `Lock`), else None.
    lock: Any

    def tick(self, min: Callable[..., float] = min, **kwargs: Any) -> float:
        """One loop: keep or take the lock, fire what is due; the seconds to sleep."""
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            log.warning("beat: the worker this beat was embedded in is gone; exiting")
            raise SystemExit(0)
        try:
            if self.lock_key and not self._hold_lock():
                return self.max_interval
            remaining = [self.max_interval]
            for entry in self.schedule.values():
                next_in = self.maybe_due(entry)
                if next_in is not None:
                    remaining.append(next_in)
            return min(remaining)
        except (redis.RedisError, RedisUnavailableError) as exc:
            log.warning("beat: Redis error, trying again in %s s: %s", self.max_interval, exc)
            return self.max_interval
        except Exception:  # a beat that dies fires nothing: log, and try again next loop
            log.exception("beat: loop failed, trying again in %s s", self.max_interval)
            return self.max_interval

    def maybe_due(self, entry: RecurringEntry, **kwargs: Any) -> float | None:
        """Fire the entry's ticks that passed since its last run, as its misfire policy says,
        and a tick its overlap policy kept; seconds to its next tick."""
        if not entry.is_recurring_job:
            return super().maybe_due(entry, **self._maybe_due_kwargs)
        schedule = entry.schedule
        now = datetime.now(timezone.utc)
        last = entry.last_run_at or now
        latest = schedule.latest_tick(now, last)
        if latest is None:
            if not entry.buffered:
                return schedule.seconds_to_next(max(now, last))
            next_run = schedule.next_tick(max(now, last))
            if self._fire(entry, from_ms(entry.buffered)) == "buffered" and next_run is not None:
                next_run = min(next_run, now + timedelta(seconds=BUFFER_POLL_S))
            entry.advance(last, next_run)
            return None if next_run is None else max((next_run - now).total_seconds(), 0.0)
        status = ""
        for tick in self._ticks_to_run(entry, latest, now, last):
            status = self._fire(entry, tick)
            if status in STOPPED:
                break
        next_run = None if status in STOPPED else schedule.next_tick(latest)
        if status == "buffered" and next_run is not None:
            next_run = min(next_run, now + timedelta(seconds=BUFFER_POLL_S))  # look again soon
        entry.advance(latest, next_run)
        return None if next_run is None else max((next_run - now).total_seconds(), 0.0)

    @staticmethod
    def _ticks_to_run(entry: RecurringEntry, latest: datetime, now: datetime, last: datetime) -> list[datetime]:
        """The ticks in (last, now] that run: the latest (``latest``), the latest if it is not
        later than the misfire window (``skip``), or each within the window (``all``)."""
        window = timedelta(milliseconds=entry.misfire_window_ms)
        if entry.misfire == "skip":
            return [latest] if now - latest <= window else []
        if entry.misfire == "all":
            first = max(last, now - window) + timedelta(microseconds=1)
            return entry.schedule.ticks_between(first, latest, MAX_CATCH_UP_TICKS)
        return [latest]

    def _fire(self, entry: RecurringEntry, tick: datetime) -> str:
        task = self.app.tasks.get(entry.task)
        if task is None:
            log.error("beat: task %s of %s is not registered on this app", entry.task, entry.name)
            return "error"
        try:
            status = str(task(**entry.kwargs, tick_ms=to_ms(tick)))
            log.info("beat: fired %s at %s: %s", entry.name, tick.isoformat(), status)
            return status
        except (redis.RedisError, RedisUnavailableError):
            raise  # not recorded as fired: the next loop fires it again
        except Exception:
            log.exception("beat: firing %s for %s failed", entry.name, tick.isoformat())
            return "error"

    def _hold_lock(self) -> bool:
        """Extend the lock we hold, or take it without waiting if we hold none or lost it."""
        if self.lock is not None:
            try:
                self.lock.extend(int(self.lock_timeout), replace_ttl=True)
                return True
            except LockError:
                log.warning("beat: lost the lock %s; standing by", self.lock_key)
                self.lock = None
        lock = get_redis(self.app).lock(self.lock_key, timeout=self.lock_timeout, sleep=self.max_interval)
        if lock.acquire(blocking=False):
            log.info("beat: Acquired lock")
            self.lock = lock
            return True
        return False


@beat_embedded_init.connect
def _watch_worker(sender: Any = None, **kwargs: Any) -> None:
    """An embedded beat remembers its worker, to exit if the worker is killed without it."""
    scheduler = sender.scheduler
    if isinstance(scheduler, CoordinatorScheduler):
        scheduler.parent_pid = os.getppid()
