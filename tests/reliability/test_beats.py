"""Recurring jobs fired by real beat processes (`python -m coordinator.beat`) and by beats
embedded in managed workers (`celery worker -B`): once per tick, however many beats run."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import redis

from coordinator import Job, JobQueueCoordinator, JobState
from coordinator.recurring.entry import meta_json
from coordinator.registry.codec import to_ms
from tests import processors
from tests.support.beats import assert_one_job_per_tick, runs, tick_ms
from tests.support.waiting import wait_until


def missed(ticks: list[int], every: int, spans: list[tuple[int, int]]) -> int:
    """Pattern ticks inside the given (first, last) spans that have no job."""
    have = set(ticks)
    return sum(1 for first, last in spans for tick in range(first, last + 1, every) if tick not in have)


def test_two_beats_fire_each_tick_once_and_a_standby_takes_over(coord: JobQueueCoordinator, beats, report) -> None:
    coord.create_queue("q")
    pair = [beats(), beats()]
    wait_until(lambda: any("Acquired lock" in beat.log() for beat in pair), 30)
    # Added while both beats run: fires without a restart.
    coord.schedule_recurring_job("q", "tick", {"n": 1}, every=1000, key="k")
    wait_until(lambda: len(runs(coord, "q", "k")) >= 6, 20)
    [leader] = [beat for beat in pair if beat.fired()]
    [standby] = [beat for beat in pair if beat is not leader]
    assert standby.fired() == []

    leader.kill()
    assert leader.process.returncode == -9  # the fault happened: SIGKILL, no lock release
    killed_ms = to_ms(datetime.now(timezone.utc))
    wait_until(lambda: len([t for t in tick_ms(runs(coord, "q", "k")) if t > killed_ms]) >= 3, 30)
    assert standby.fired()
    ticks = assert_one_job_per_tick(coord, "q", "k", 1000)
    before = [tick for tick in ticks if tick <= killed_ms]
    after = [tick for tick in ticks if tick > killed_ms]
    # The standby waited out the dead leader's lock (5 s, renewed each loop), then fired one run
    # for the ticks it missed (the latest), not one per missed tick: so no tick in the first
    # seconds after the kill has a job.
    assert after[0] - killed_ms >= 2000, (killed_ms, after)
    lost = missed(ticks, 1000, [(before[0], before[-1]), (after[0], after[-1])])
    assert lost == 0
    skipped = (after[0] - before[-1]) // 1000 - 1
    report.add("two beats, the leader SIGKILLed (every=1000)", len(ticks), lost, len(ticks) - len(set(ticks)),
               (after[0] - killed_ms) / 1000,
               note=f"standby fired {len(standby.fired())} ticks, {skipped} outage ticks skipped; "
                    f"fire lag max {max(standby.fire_lags_ms())} ms")


def test_beat_killed_and_restarted_fires_no_duplicate_and_one_catch_up(coord: JobQueueCoordinator,
                                                                       beats, report) -> None:
    coord.create_queue("q")
    coord.schedule_recurring_job("q", "tick", {}, every=1000, key="k")
    first = beats()
    wait_until(lambda: len(runs(coord, "q", "k")) >= 2, 20)
    first.kill()
    assert first.process.returncode == -9
    killed_ms = to_ms(datetime.now(timezone.utc))
    last_before = tick_ms(runs(coord, "q", "k"))[-1]
    second = beats()
    wait_until(lambda: len([t for t in tick_ms(runs(coord, "q", "k")) if t > killed_ms]) >= 2, 30)
    ticks = assert_one_job_per_tick(coord, "q", "k", 1000)
    before = [tick for tick in ticks if tick <= last_before]
    after = [tick for tick in ticks if tick > last_before]
    # The new beat waited out the dead one's lock; then one run for the whole outage (the
    # latest tick), none for the older missed ticks.
    assert after[0] - killed_ms >= 2000, (killed_ms, after)
    lost = missed(ticks, 1000, [(before[0], before[-1]), (after[0], after[-1])])
    assert lost == 0
    skipped = (after[0] - last_before) // 1000 - 1
    report.add("beat SIGKILLed and restarted (every=1000)", len(ticks), lost, len(ticks) - len(set(ticks)),
               (after[0] - killed_ms) / 1000,
               note=f"{skipped} outage ticks skipped, 1 catch-up run; fire lag max {max(second.fire_lags_ms())} ms")


def test_missed_cron_ticks_in_a_zone_fire_once_on_return(coord: JobQueueCoordinator,
                                                         redis_client: redis.Redis, beats) -> None:
    coord.create_queue("q")
    now = datetime.now(timezone.utc)
    if now.second >= 45:  # keep the next minute boundary out of the test
        time.sleep(61 - now.second)
        now = datetime.now(timezone.utc)
    latest = now.replace(second=0, microsecond=0)
    kathmandu = latest.astimezone(ZoneInfo("Asia/Kathmandu"))  # UTC+05:45
    coord.schedule_recurring_job("q", "minutely", {}, cron="* * * * *", key="minutely")
    coord.schedule_recurring_job("q", "daily", {}, cron=f"{kathmandu.minute} {kathmandu.hour} * * *",
                                 tz="Asia/Kathmandu", key="daily")
    # As if no beat had run for the last 10 minutes: 10 ticks missed by one, 1 by the other.
    for key in ("minutely", "daily"):
        entry = coord.keys.beat_entry("q", key)
        redis_client.hset(entry, "meta", meta_json(latest - timedelta(minutes=10)))
        redis_client.zadd(coord.keys.beat_schedule, {entry: int((latest - timedelta(minutes=9)).timestamp())})
    beat = beats()
    wait_until(lambda: len(beat.fired()) >= 2, 30)
    time.sleep(2)  # a second run would come at once (each loop sees the entry due again)
    assert [job.created_at for job in runs(coord, "q", "minutely")] == [latest]
    assert [job.created_at for job in runs(coord, "q", "daily")] == [latest]
    assert {s.key: s.run_count for s in coord.get_recurring_jobs("q")} == {"minutely": 1, "daily": 1}


def test_limit_stops_after_n_runs(coord: JobQueueCoordinator, beats) -> None:
    coord.create_queue("q")
    coord.schedule_recurring_job("q", "tick", {}, every=400, key="k", limit=3)
    beats()
    wait_until(lambda: len(runs(coord, "q", "k")) >= 3, 20)
    time.sleep(1.5)  # three more ticks' worth
    assert len(runs(coord, "q", "k")) == 3
    [schedule] = coord.get_recurring_jobs("q")
    assert (schedule.run_count, schedule.next_run) == (3, None)
    assert_one_job_per_tick(coord, "q", "k", 400)


def test_two_beats_without_lock_still_create_one_job_per_tick(coord: JobQueueCoordinator, beats) -> None:
    """Both beats fire every tick; the per-tick claim and the job id keep one job per tick."""
    coord.create_queue("q")
    pair = [beats("tests.beat_without_lock"), beats("tests.beat_without_lock")]
    coord.schedule_recurring_job("q", "tick", {}, every=500, key="k")
    wait_until(lambda: set(dict(pair[0].fired())) & set(dict(pair[1].fired())), 20)
    # Freeze the schedule (its limit reached) so the counts below stand still while we read them.
    runs_so_far = coord.get_recurring_jobs("q")[0].run_count
    coord.schedule_recurring_job("q", "tick", {}, every=500, key="k", limit=runs_so_far)
    time.sleep(1)
    fired = [entry for beat in pair for entry in beat.fired()]
    ticks = assert_one_job_per_tick(coord, "q", "k", 500)
    claimed = sorted(to_ms(datetime.fromisoformat(tick)) for tick, status in fired if status in ("claimed", "last"))
    assert claimed == ticks  # each tick claimed by exactly one beat
    assert {status for _, status in fired} <= {"claimed", "last", "again", "done", "limit"}


def test_embedded_beats_run_updates_and_removal(coord: JobQueueCoordinator) -> None:
    """Two managed workers, each with its beat (the default): runs complete as ordinary jobs;
    updating the key changes the data and pattern of the next runs; removing stops them."""
    coord.create_queue("q")
    for _ in range(2):
        coord.register_worker("q", processors.echo, pool="solo", concurrency=1)

    def completed(version: int) -> list[Job]:
        return [job for job in runs(coord, "q", "k") if job.state is JobState.COMPLETED
                and job.data == {"v": version}]

    coord.schedule_recurring_job("q", "tick", {"v": 1}, every=1000, key="k")
    wait_until(lambda: len(completed(1)) >= 2, 30)
    coord.schedule_recurring_job("q", "tick", {"v": 2}, every=2000, key="k")
    updated_ms = to_ms(datetime.now(timezone.utc))
    wait_until(lambda: len(completed(2)) >= 2, 30)
    assert coord.remove_recurring_job("q", "k") is True
    removed_ms = to_ms(datetime.now(timezone.utc))
    time.sleep(2.5)  # more than one tick of the old pattern

    jobs = runs(coord, "q", "k")
    ticks = tick_ms(jobs)
    assert len(set(ticks)) == len(ticks)
    assert all(tick <= removed_ms + 100 for tick in ticks), (removed_ms, ticks)  # none after removal
    v2 = [tick for job, tick in zip(jobs, ticks) if job.data == {"v": 2}]
    assert all(tick % 2000 == 0 for tick in v2), v2
    assert all(job.data == {"v": 2} for job, tick in zip(jobs, ticks) if tick > updated_ms + 1000)
    done = completed(2)[0]
    assert done.result["echo"] == {"v": 2} and done.name == "tick"


def test_an_adopted_apps_own_beat_schedule_runs_beside(coord: JobQueueCoordinator, redis_client: redis.Redis,
                                                        prefix: str, beats) -> None:
    coord.create_queue("q")
    coord.schedule_recurring_job("q", "tick", {}, every=1000, key="k")
    static_queue = f"{prefix}-static"
    try:
        beats("tests.beat_with_static_entry")
        wait_until(lambda: len(runs(coord, "q", "k")) >= 2 and redis_client.llen(static_queue) >= 2, 30)
        assert_one_job_per_tick(coord, "q", "k", 1000)
    finally:
        redis_client.delete(static_queue, f"_kombu.binding.{static_queue}")
