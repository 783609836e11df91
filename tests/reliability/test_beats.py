"""Recurring jobs fired by real beat processes (`python -m coordinator.beat`) and by beats
embedded in managed workers (`celery worker -B`): once per tick, however many beats run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import redis

from coordinator import Job, JobQueueCoordinator, JobState
from coordinator.recurring.entry import meta_json
from coordinator.recurring.manager import run_id
from coordinator.registry.codec import to_ms
from tests import processors
from tests.conftest import REDIS_URL
from tests.reliability.conftest import REPORT
from tests.test_processing import wait_until

ALL_STATES = [state.value for state in JobState]
FIRED = re.compile(r"\[([\d-]+ [\d:]+,\d+): \w+/\w+\] beat: fired (\S+) at (\S+): (\w+)")


class Beat:
    """One beat subprocess of a prefix, its output in a log file."""

    def __init__(self, prefix: str, log_path: Path, module: str, env: dict[str, str] | None = None) -> None:
        env = {**os.environ, "REDIS_URL": REDIS_URL, "JQC_PREFIX": prefix, "LOG_LEVEL": "INFO", **(env or {})}
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p or os.getcwd() for p in sys.path))
        self.log_path = log_path
        with open(log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", module], env=env, stdin=subprocess.DEVNULL, stdout=log_file,
                stderr=subprocess.STDOUT, start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def fired(self) -> list[tuple[str, str]]:
        """(tick, status) of every tick this beat fired."""
        return [(tick, status) for _, _, tick, status in FIRED.findall(self.log())]

    def fire_lags_ms(self) -> list[int]:
        """For every tick this beat fired: how long after the tick it fired it (from its log)."""
        lags = []
        for logged, _, tick, _ in FIRED.findall(self.log()):
            fired_at = datetime.strptime(logged, "%Y-%m-%d %H:%M:%S,%f").astimezone()  # local time
            lags.append(to_ms(fired_at) - to_ms(datetime.fromisoformat(tick)))
        return lags

    def kill(self) -> None:
        """SIGKILL: no lock release, no clean-up."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def beats(prefix: str, tmp_path: Path) -> Iterator[Callable[..., Beat]]:
    """Start beat subprocesses of the test's prefix; all are stopped after the test."""
    started: list[Beat] = []

    def start(module: str = "coordinator.beat", **env: str) -> Beat:
        beat = Beat(prefix, tmp_path / f"beat-{len(started)}.log", module, env)
        started.append(beat)
        return beat

    yield start
    for beat in started:
        beat.stop()


def runs(coord: JobQueueCoordinator, queue: str, key: str) -> list[Job]:
    """The jobs a schedule created, oldest tick first."""
    jobs = [job for job in coord.get_jobs(queue, ALL_STATES) if job.schedule_key == key]
    return sorted(jobs, key=lambda job: job.created_at)


def tick_ms(jobs: list[Job]) -> list[int]:
    return [to_ms(job.created_at) for job in jobs]


def assert_one_job_per_tick(coord: JobQueueCoordinator, queue: str, key: str, every: int) -> list[int]:
    """Ticks on the pattern, strictly increasing, each job id naming its tick, counted once."""
    jobs = runs(coord, queue, key)
    ticks = tick_ms(jobs)
    assert all(tick % every == 0 for tick in ticks), ticks
    assert all(b - a >= every for a, b in zip(ticks, ticks[1:])), ticks
    assert [job.id for job in jobs] == [run_id(key, tick) for tick in ticks]
    [schedule] = [s for s in coord.get_recurring_jobs(queue) if s.key == key]
    assert schedule.run_count == len(jobs)
    return ticks


def test_two_beats_fire_each_tick_once_and_a_standby_takes_over(coord: JobQueueCoordinator, beats) -> None:
    coord.create_queue("q")
    pair = [beats(), beats()]
    wait_until(lambda: any("Acquired lock" in beat.log() for beat in pair), 30)
    # Added while both beats run: fires without a restart.
    coord.schedule_recurring_job("q", "tick", {"n": 1}, every=1000, key="k")
    wait_until(lambda: len(runs(coord, "q", "k")) >= 6, 20)
    [leader] = [beat for beat in pair if beat.fired()]
    [standby] = [beat for beat in pair if beat is not leader]
    assert standby.fired() == []
    before = tick_ms(runs(coord, "q", "k"))
    gaps = [b - a for a, b in zip(before, before[1:])]
    assert sum(gap == 1000 for gap in gaps) >= 3 and max(gaps) <= 3000, gaps  # about once a second

    leader.kill()
    killed_ms = to_ms(datetime.now(timezone.utc))
    wait_until(lambda: len([t for t in tick_ms(runs(coord, "q", "k")) if t > killed_ms]) >= 3, 30)
    assert standby.fired()
    ticks = assert_one_job_per_tick(coord, "q", "k", 1000)
    after = [tick for tick in ticks if tick > killed_ms]
    # The standby waited out the dead leader's lock (5 s), then fired one run for the ticks it
    # missed (the latest) rather than one per missed tick: every tick it fired was under a
    # second old, so none of the older missed ticks was fired late.
    assert 2000 <= after[0] - killed_ms <= 9000, (killed_ms, after)
    assert all(lag < 1500 for lag in standby.fire_lags_ms()), standby.fire_lags_ms()
    REPORT.add("two beats, the leader SIGKILLed (every=1000)", len(ticks), 0, 0, (after[0] - killed_ms) / 1000,
               note="one job per tick; standby fired the latest missed tick only")


def test_beat_killed_and_restarted_fires_no_duplicate_and_one_catch_up(coord: JobQueueCoordinator,
                                                                       beats) -> None:
    coord.create_queue("q")
    coord.schedule_recurring_job("q", "tick", {}, every=1000, key="k")
    first = beats()
    wait_until(lambda: len(runs(coord, "q", "k")) >= 2, 20)
    first.kill()
    killed_ms = to_ms(datetime.now(timezone.utc))
    last_before = tick_ms(runs(coord, "q", "k"))[-1]
    second = beats()
    wait_until(lambda: len([t for t in tick_ms(runs(coord, "q", "k")) if t > killed_ms]) >= 2, 30)
    ticks = assert_one_job_per_tick(coord, "q", "k", 1000)
    after = [tick for tick in ticks if tick > last_before]
    # The new beat waited out the dead one's lock; then one run for the whole outage (the
    # latest tick, under a second old when fired), none for the older missed ticks.
    assert after[0] - killed_ms >= 2000, (killed_ms, after)
    assert all(lag < 1500 for lag in second.fire_lags_ms()), second.fire_lags_ms()
    REPORT.add("beat SIGKILLed and restarted (every=1000)", len(ticks), 0, 0, (after[0] - killed_ms) / 1000,
               note="no duplicate tick, one catch-up run")


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
