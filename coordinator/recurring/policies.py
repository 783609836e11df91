"""What a recurring job's tick does given its previous run: the overlap and failure policies.

Each run is an ordinary registry job, and the schedule's hash remembers the id of the last one
(``last_job``), so a tick reads that job's state: still waiting or active means the runs would
overlap. The outcome of each finished run is counted once (``counted_job``, ``failures``).

- ``allow``: run anyway (Celery beat's behaviour).
- ``skip``: no run for this tick.
- ``buffer_one``: keep this tick (``buffered``) and run it once the previous run has ended;
  a further tick while one is kept is skipped. The beat looks again every loop.
- ``cancel_previous``: cancel the previous run (cooperatively, see docs/control.md), then run.

``pause_after_failures`` = N pauses the schedule when the tick after the Nth failed run in a
row finds it failed (the failure is seen by the next tick, not when the run fails).
"""

from __future__ import annotations

import logging

import redis
from redis.commands.core import Script

from coordinator.models import JobState, RecurringJobOptions
from coordinator.scheduler import JobScheduler

log = logging.getLogger(__name__)


class RunPolicies:
    """Applies a schedule's overlap and failure policies to its ticks."""

    def __init__(self, client: redis.Redis, jobs: JobScheduler, tick: Script, recent_ticks: int) -> None:
        self.redis = client
        self.jobs = jobs
        self._tick = tick
        self._recent = recent_ticks

    def buffered_tick(self, entry_key: str) -> int:
        """The tick kept by ``buffer_one`` until the previous run ends; 0 if none."""
        return int(self.redis.hget(entry_key, "buffered") or 0)

    def ran(self, entry_key: str, job_id: str) -> None:
        """Remember the newest run, whose state the next tick reads."""
        self.redis.hset(entry_key, "last_job", job_id)

    def set_paused(self, entry_key: str, paused: bool) -> bool:
        """Pause or resume; False if there is no such schedule."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hexists(entry_key, "opts")
        if paused:
            pipe.hset(entry_key, "paused", "1")
        else:
            pipe.hset(entry_key, mapping={"paused": "0", "failures": 0})
        exists = pipe.execute()[0]
        if not exists:
            self.redis.delete(entry_key)  # the schedule was removed: drop what was just written
        return bool(exists)

    def decide(self, queue: str, entry_key: str, opts: RecurringJobOptions, tick: int, buffered: int) -> str:
        """``run``, or why the tick creates no job now: ``paused``, ``skipped``, ``buffered``."""
        last_job, counted, failures_text = self.redis.hmget(entry_key, "last_job", "counted_job", "failures")
        previous = self.jobs.get_job(queue, last_job) if last_job else None
        if previous is not None and previous.state.is_final and counted != previous.id:
            failures = int(failures_text or 0) + 1 if previous.state is JobState.FAILED else 0
            self.redis.hset(entry_key, mapping={"counted_job": previous.id, "failures": failures})
            if opts.pause_after_failures and failures >= opts.pause_after_failures:
                self.redis.hset(entry_key, "paused", "1")
                self._skip(entry_key, tick)
                log.warning("recurring job %s paused after %d failed runs in a row", entry_key, failures)
                return "paused"
        running = previous is not None and not previous.state.is_final
        if running and opts.overlap == "skip":
            self._skip(entry_key, tick)
            return "skipped"
        if running and opts.overlap == "buffer_one":
            if buffered and buffered != tick:
                self._skip(entry_key, tick)
                return "skipped"
            self.redis.hset(entry_key, "buffered", tick)
            return "buffered"
        if running and opts.overlap == "cancel_previous" and previous is not None:
            self.jobs.cancel_job(queue, previous.id, reason=f"superseded by the run of tick {tick}")
        if buffered == tick:
            self.redis.hdel(entry_key, "buffered")
        return "run"

    def _skip(self, entry_key: str, tick: int) -> None:
        self._tick(keys=[entry_key], args=["skip", tick, self._recent])
