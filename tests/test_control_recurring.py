"""Recurring-job policies with a real beat (`python -m coordinator.beat`) and a real worker:
overlap, misfire after the beat was stopped for a while, pause and resume, pause after failures,
backfill, jitter."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from coordinator import InvalidJobDataError, Job, JobQueueCoordinator, JobState
from coordinator.recurring.manager import run_id
from coordinator.registry.codec import to_ms
from tests import control_processors, processors
from tests.conftest import REDIS_URL
from tests.support.beats import assert_one_job_per_tick, runs
from tests.support.waiting import wait_until

WAIT_S = 60


def slow(prefix: str, seconds: float) -> dict:
    return {"url": REDIS_URL, "key": f"{prefix}:test:runs", "seconds": seconds}


def finished_runs(coord: JobQueueCoordinator, key: str) -> list[Job]:
    return [job for job in runs(coord, "q", key) if job.state.is_final]


def overlapping(jobs: list[Job]) -> int:
    """Pairs of consecutive runs where the later one started before the earlier one ended."""
    return sum(1 for a, b in zip(jobs, jobs[1:]) if b.processed_on and a.finished_on and b.processed_on < a.finished_on)


@pytest.fixture
def worker_and_beat(coord: JobQueueCoordinator, beats):
    def start(processor, key: str, **options):
        coord.create_queue("q")
        coord.register_worker("q", processor, pool="threads", concurrency=4, embed_beat=False)
        coord.schedule_recurring_job("q", "tick", options.pop("data"), key=key, **options)
        return beats()
    return start


def test_overlap_allow_runs_every_tick_even_while_the_previous_runs(coord, worker_and_beat, prefix) -> None:
    worker_and_beat(processors.record, "k", every=1000, overlap="allow", data=slow(prefix, 2.5))
    wait_until(lambda: len(finished_runs(coord, "k")) >= 4, WAIT_S)
    jobs = finished_runs(coord, "k")
    assert_one_job_per_tick(coord, "q", "k", 1000)
    assert overlapping(jobs) >= 2  # a 2.5 s job every second: the runs overlap


def test_overlap_skip_never_starts_a_run_while_the_previous_one_runs(coord, worker_and_beat, prefix) -> None:
    beat = worker_and_beat(processors.record, "k", every=1000, overlap="skip", data=slow(prefix, 2.5))
    wait_until(lambda: len(finished_runs(coord, "k")) >= 3, WAIT_S)
    jobs = finished_runs(coord, "k")
    assert overlapping(jobs) == 0
    ticks = [to_ms(job.created_at) for job in jobs]
    assert all(b - a >= 2000 for a, b in zip(ticks, ticks[1:])), ticks  # the ticks in between were skipped
    assert "skipped" in [status for _, status in beat.fired()]
    [schedule] = coord.get_recurring_jobs("q")
    assert schedule.run_count == len(runs(coord, "q", "k"))  # skipped ticks are not runs


def test_overlap_buffer_one_keeps_one_tick_until_the_previous_run_ends(coord, worker_and_beat, prefix) -> None:
    beat = worker_and_beat(processors.record, "k", every=1000, overlap="buffer_one", data=slow(prefix, 2.5))
    wait_until(lambda: len(finished_runs(coord, "k")) >= 3, WAIT_S)
    jobs = finished_runs(coord, "k")
    assert overlapping(jobs) == 0
    # a kept run's tick is older than the end of the run before it: it waited for it, then ran
    kept = [b for a, b in zip(jobs, jobs[1:]) if b.created_at < a.finished_on]
    assert kept
    fired = [status for _, status in beat.fired()]
    assert "buffered" in fired and "skipped" in fired  # one kept, the next ones dropped
    assert len({job.id for job in jobs}) == len(jobs)


def test_overlap_cancel_previous_cancels_the_running_run(coord, worker_and_beat, prefix) -> None:
    worker_and_beat(control_processors.loop_until_cancelled, "k", every=2000, overlap="cancel_previous",
                    data={"url": REDIS_URL, "key": f"{prefix}:test"})
    wait_until(lambda: len([j for j in runs(coord, "q", "k") if j.state is JobState.CANCELLED]) >= 2, WAIT_S)
    jobs = runs(coord, "q", "k")
    cancelled = [job for job in jobs if job.state is JobState.CANCELLED]
    assert all(job.failed_reason.startswith("superseded by the run of tick") for job in cancelled)
    assert all(job.attempts_made == 1 for job in cancelled)  # each ran, then was cancelled
    assert len([job for job in jobs if job.state is JobState.ACTIVE]) <= 1


def stop_beat_for_a_while(coord: JobQueueCoordinator, beats, key: str, downtime_s: float):
    """Let the beat fire two runs, stop it for ``downtime_s``, start another; (stopped, restarted) ms."""
    first = beats()
    wait_until(lambda: len(runs(coord, "q", key)) >= 2, WAIT_S)
    first.stop()
    stopped = to_ms(datetime.now(timezone.utc))
    time.sleep(downtime_s)
    restarted = to_ms(datetime.now(timezone.utc))
    second = beats()
    wait_until(lambda: any(to_ms(job.created_at) > restarted for job in runs(coord, "q", key)), WAIT_S)
    # nothing fires while the test reads the runs: paused (a fire under way completes), then stopped
    coord.pause_recurring_job("q", key)
    wait_until(lambda: coord.get_recurring_jobs("q")[0].run_count == len(runs(coord, "q", key)), WAIT_S)
    second.stop()
    return stopped, restarted


def missed_runs(coord: JobQueueCoordinator, key: str, stopped: int, restarted: int) -> list[int]:
    return [t for t in (to_ms(job.created_at) for job in runs(coord, "q", key)) if stopped < t < restarted]


@pytest.mark.parametrize("window_ms", [60_000, 2_500])
def test_misfire_all_runs_each_missed_tick_within_the_window(coord, beats, window_ms) -> None:
    coord.create_queue("q")
    coord.schedule_recurring_job("q", "tick", {}, key="k", every=1000, misfire="all", misfire_window_ms=window_ms)
    stopped, restarted = stop_beat_for_a_while(coord, beats, "k", 6)
    missed = missed_runs(coord, "k", stopped, restarted)
    assert_one_job_per_tick(coord, "q", "k", 1000)  # each once, on the pattern
    expected = list(range((stopped // 1000 + 1) * 1000, restarted, 1000))
    if window_ms == 60_000:
        assert missed == expected
    else:  # only ticks at most 2.5 s older than the new beat's first loop (after `restarted`)
        assert set(missed) < set(expected) and len(expected) >= 5
        assert all(t > restarted - window_ms for t in missed)


def test_misfire_latest_runs_one_job_for_the_missed_ticks(coord, beats) -> None:
    coord.create_queue("q")
    coord.schedule_recurring_job("q", "tick", {}, key="k", every=1000, misfire="latest")
    stopped, restarted = stop_beat_for_a_while(coord, beats, "k", 6)
    assert_one_job_per_tick(coord, "q", "k", 1000)
    ticks = [to_ms(job.created_at) for job in runs(coord, "q", "k")]
    gap = [b for a, b in zip(ticks, ticks[1:]) if b - a > 1000]
    assert len(gap) == 1 and gap[0] >= restarted - 1000  # one run owed, at the tick before the beat came back
    assert not missed_runs(coord, "k", stopped, restarted - 1000)


def test_misfire_skip_runs_none_of_the_missed_ticks(coord, beats) -> None:
    coord.create_queue("q")
    coord.schedule_recurring_job("q", "tick", {}, key="k", every=1000, misfire="skip", misfire_window_ms=500)
    stopped, restarted = stop_beat_for_a_while(coord, beats, "k", 6)
    assert_one_job_per_tick(coord, "q", "k", 1000)
    assert missed_runs(coord, "k", stopped, restarted) == []


def test_pause_and_resume_with_a_beat(coord: JobQueueCoordinator, beats) -> None:
    coord.create_queue("q")
    coord.schedule_recurring_job("q", "tick", {}, key="k", every=1000, misfire="all")
    beats()
    wait_until(lambda: len(runs(coord, "q", "k")) >= 2, WAIT_S)
    assert coord.pause_recurring_job("q", "k")
    paused_at = to_ms(datetime.now(timezone.utc))
    assert coord.get_recurring_jobs("q")[0].paused
    time.sleep(4)
    resumed_at = to_ms(datetime.now(timezone.utc))
    assert coord.resume_recurring_job("q", "k")
    wait_until(lambda: any(to_ms(job.created_at) > resumed_at for job in runs(coord, "q", "k")), WAIT_S)
    during = [to_ms(j.created_at) for j in runs(coord, "q", "k") if paused_at + 1000 < to_ms(j.created_at) < resumed_at]
    assert during == []  # paused ticks make no job, and are not caught up after resume
    assert not coord.get_recurring_jobs("q")[0].paused
    assert not coord.pause_recurring_job("q", "nope")


def test_pause_after_consecutive_failures(coord: JobQueueCoordinator, beats) -> None:
    coord.create_queue("q")
    coord.register_worker("q", processors.always_fails, pool="threads", concurrency=2, embed_beat=False)
    coord.schedule_recurring_job("q", "tick", {}, key="k", every=1000, max_retries=0, pause_after_failures=2)
    beats()
    wait_until(lambda: coord.get_recurring_jobs("q")[0].paused, WAIT_S)
    [schedule] = coord.get_recurring_jobs("q")
    assert schedule.consecutive_failures == 2
    count = len(runs(coord, "q", "k"))
    time.sleep(3)
    assert len(runs(coord, "q", "k")) == count  # no run while paused
    assert all(job.state is JobState.FAILED for job in runs(coord, "q", "k"))


def test_backfill_of_ten_ticks_runs_ten_jobs_once_each(coord: JobQueueCoordinator, prefix, redis_client) -> None:
    coord.create_queue("q")
    coord.schedule_recurring_job("q", "tick", slow(prefix, 0), key="k", cron="0 * * * *")
    start = datetime(2026, 1, 1, 0, 0, tzinfo=timezone.utc)
    end = start + timedelta(hours=9, minutes=30)
    jobs = coord.backfill_recurring_job("q", "k", start, end)
    assert [job.id for job in jobs] == [run_id("k", to_ms(start + timedelta(hours=h))) for h in range(10)]
    again = coord.backfill_recurring_job("q", "k", start, end)  # nothing new: each tick has its run
    assert [job.id for job in again] == [job.id for job in jobs]
    coord.register_worker("q", processors.record, pool="threads", concurrency=4, embed_beat=False)
    for job in jobs:
        assert coord.wait_for_job("q", job.id, timeout=WAIT_S).state is JobState.COMPLETED
    executed = redis_client.lrange(f"{prefix}:test:runs", 0, -1)
    assert sorted(executed) == sorted(job.id for job in jobs)  # ten jobs, each run once
    assert [job.created_at for job in jobs] == [start + timedelta(hours=h) for h in range(10)]


@pytest.mark.parametrize(("start", "end", "field"), [
    (datetime(2026, 1, 2, tzinfo=timezone.utc), datetime(2026, 1, 1, tzinfo=timezone.utc), "end"),
    (datetime(2026, 1, 1), datetime(2026, 1, 2, tzinfo=timezone.utc), "start"),
])
def test_backfill_refuses_a_bad_range(coord: JobQueueCoordinator, start, end, field) -> None:
    coord.create_queue("q")
    coord.schedule_recurring_job("q", "tick", {}, key="k", every=1000)
    with pytest.raises(ValidationError, match=field):
        coord.backfill_recurring_job("q", "k", start, end)
    with pytest.raises(InvalidJobDataError, match="more than"):
        coord.backfill_recurring_job("q", "k", datetime(2026, 1, 1, tzinfo=timezone.utc),
                                     datetime(2026, 1, 2, tzinfo=timezone.utc))
    assert coord.get_queue_status("q").counts.waiting == 0


def test_jitter_delays_each_run_below_the_bound(coord: JobQueueCoordinator) -> None:
    coord.create_queue("q")
    coord.schedule_recurring_job("q", "tick", {}, key="k", every=1000, jitter_ms=1500)
    base = 1_780_000_000_000
    for n in range(8):
        assert coord._recurring.fire("q", "k", base + n * 1000) == "claimed"
    delays = [job.options.delay for job in runs(coord, "q", "k")]
    assert len(delays) == 8 and all(0 <= d < 1500 for d in delays) and len(set(delays)) > 1
    counts = coord.get_queue_status("q").counts  # a short delay may already have been promoted
    assert counts.delayed + counts.waiting == len(delays) and counts.delayed <= sum(1 for d in delays if d > 0)


@pytest.mark.parametrize(("fields", "field"), [
    ({"overlap": "queue"}, "overlap"), ({"misfire": "some"}, "misfire"),
    ({"misfire_window_ms": 0}, "misfire_window_ms"),
    ({"pause_after_failures": 0}, "pause_after_failures"), ({"jitter_ms": -1}, "jitter_ms"),
])
def test_bad_policies_name_the_field(coord: JobQueueCoordinator, fields, field) -> None:
    coord.create_queue("q")
    with pytest.raises(ValidationError, match=field):
        coord.schedule_recurring_job("q", "tick", {}, every=1000, **fields)
    assert coord.get_recurring_jobs("q") == []
