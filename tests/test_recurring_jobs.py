"""Recurring jobs without a beat: bad input saves nothing, keys update in place, each tick's run
is enqueued once however often it is fired (what two beats racing on one tick would do)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis
from pydantic import ValidationError

from coordinator import (
    CoordinatorError,
    InvalidJobDataError,
    JobQueueCoordinator,
    JobState,
    QueueNotFoundError,
    RecurringJobOptions,
    WorkerOptions,
)
from coordinator.recurring.entry import RecurringEntry
from coordinator.recurring.manager import run_id
from coordinator.registry.codec import from_ms
from coordinator.runtime.worker_main import celery_argv
from coordinator.workers.spec import WorkerSpec


def beat_keys(client: redis.Redis, prefix: str) -> list[str]:
    return sorted(client.scan_iter(match=f"{prefix}:beat*"))


@pytest.mark.parametrize(("fields", "field"), [
    ({"cron": "61 * * * *"}, "cron"),
    ({"cron": "* * * *"}, "cron"),
    ({"cron": "0 * * * * *"}, "cron"),
    ({"cron": "0 0 31 2 *"}, "cron"),  # croniter.is_valid accepts it; it never fires
    ({"cron": "0 9 * * *", "every": 1000}, "cron, every"),
    ({}, "cron, every"),
    ({"every": 0}, "every"),
    ({"every": -5}, "every"),
    ({"every": 1000, "tz": "Mars/Olympus_Mons"}, "tz"),
    ({"cron": "0 9 * * *", "tz": "europe/berlin"}, "tz"),
    ({"every": 1000, "start_date": datetime(2026, 5, 2, tzinfo=timezone.utc),
      "end_date": datetime(2026, 5, 1, tzinfo=timezone.utc)}, "end_date"),
    ({"every": 1000, "start_date": datetime(2026, 5, 2)}, "start_date"),
    ({"every": 1000, "limit": 0}, "limit"),
    ({"every": 1000, "key": "has space"}, "key"),
    ({"every": 1000, "job_id": "fixed"}, "job_id"),
    ({"every": 1000, "priority": 11}, "priority"),
])
def test_bad_input_names_the_field_and_saves_nothing(coord: JobQueueCoordinator, redis_client: redis.Redis,
                                                     prefix: str, fields: dict[str, Any], field: str) -> None:
    coord.create_queue("reports")
    with pytest.raises((ValidationError, CoordinatorError)) as caught:
        coord.schedule_recurring_job("reports", "daily", {"a": 1}, **fields)
    assert field in str(caught.value)
    assert beat_keys(redis_client, prefix) == []
    assert coord.get_recurring_jobs() == []


def test_bad_data_queue_or_name_saves_nothing(coord: JobQueueCoordinator, redis_client: redis.Redis,
                                              prefix: str) -> None:
    coord.create_queue("reports")
    with pytest.raises(QueueNotFoundError):
        coord.schedule_recurring_job("missing", "daily", {}, every=1000)
    with pytest.raises(InvalidJobDataError, match="data"):
        coord.schedule_recurring_job("reports", "daily", {"x": float("nan")}, every=1000)
    with pytest.raises(InvalidJobDataError, match="job_name"):
        coord.schedule_recurring_job("reports", "", {}, every=1000)
    assert beat_keys(redis_client, prefix) == []


def test_same_key_updates_one_schedule(coord: JobQueueCoordinator) -> None:
    coord.create_queue("reports")
    first = coord.schedule_recurring_job("reports", "digest", {"v": 1}, every=60_000, key="digest")
    second = coord.schedule_recurring_job(
        "reports", "digest", {"v": 2}, RecurringJobOptions(cron="0 9 * * *", tz="Europe/Berlin", key="digest"))
    assert (first.key, second.key) == ("digest", "digest")
    [stored] = coord.get_recurring_jobs("reports")
    assert stored.data == {"v": 2}
    assert (stored.cron, stored.every, stored.tz) == ("0 9 * * *", None, "Europe/Berlin")
    assert stored.next_run is not None
    local = stored.next_run.astimezone(ZoneInfo("Europe/Berlin"))
    assert (local.hour, local.minute, local.second) == (9, 0, 0)
    assert stored.run_count == 0 and stored.last_run is None


def test_default_key_follows_queue_name_and_pattern(coord: JobQueueCoordinator) -> None:
    coord.create_queue("reports")
    coord.create_queue("other")
    a = coord.schedule_recurring_job("reports", "digest", {"v": 1}, every=60_000)
    again = coord.schedule_recurring_job("reports", "digest", {"v": 2}, every=60_000)
    other_pattern = coord.schedule_recurring_job("reports", "digest", {}, every=30_000)
    other_name = coord.schedule_recurring_job("reports", "summary", {}, every=60_000)
    other_queue = coord.schedule_recurring_job("other", "digest", {}, every=60_000)
    assert a.key == again.key
    assert len({a.key, other_pattern.key, other_name.key}) == 3
    assert [job.data for job in coord.get_recurring_jobs("reports") if job.key == a.key] == [{"v": 2}]
    assert len(coord.get_recurring_jobs("reports")) == 3
    assert [job.key for job in coord.get_recurring_jobs("other")] == [other_queue.key]
    assert len(coord.get_recurring_jobs()) == 4


def test_remove(coord: JobQueueCoordinator, redis_client: redis.Redis, prefix: str) -> None:
    coord.create_queue("reports")
    coord.schedule_recurring_job("reports", "digest", {}, every=1000, key="k")
    assert coord.remove_recurring_job("reports", "k") is True
    assert coord.remove_recurring_job("reports", "k") is False
    assert coord.get_recurring_jobs() == []
    assert beat_keys(redis_client, prefix) == []
    with pytest.raises(QueueNotFoundError):
        coord.remove_recurring_job("missing", "k")


def test_delete_queue_removes_its_schedules(coord: JobQueueCoordinator) -> None:
    coord.create_queue("reports")
    coord.create_queue("kept")
    coord.schedule_recurring_job("reports", "digest", {}, every=1000, key="a")
    coord.schedule_recurring_job("kept", "digest", {}, every=1000, key="a")
    coord.delete_queue("reports")
    assert [(job.queue, job.key) for job in coord.get_recurring_jobs()] == [("kept", "a")]


def test_each_tick_enqueues_one_job_however_often_fired(coord: JobQueueCoordinator) -> None:
    coord.create_queue("reports", default_job_options={"priority": 2})
    coord.schedule_recurring_job("reports", "digest", {"v": 1}, every=1000, key="k", max_retries=7)
    tick = datetime(2026, 5, 1, 8, 0, 0, tzinfo=timezone.utc)
    tick_ms = int(tick.timestamp() * 1000)
    assert coord._recurring.fire("reports", "k", tick_ms) == "claimed"
    assert coord._recurring.fire("reports", "k", tick_ms) == "done"
    job = coord.get_job("reports", run_id("k", tick_ms))
    assert job is not None
    assert (job.name, job.data, job.state, job.schedule_key) == ("digest", {"v": 1}, JobState.WAITING, "k")
    assert job.created_at == tick
    assert (job.options.priority, job.options.max_retries) == (2, 7)  # queue defaults, then the schedule's
    assert coord.get_queue_status("reports").counts.waiting == 1
    [stored] = coord.get_recurring_jobs()
    assert (stored.run_count, stored.last_run) == (1, tick)


def test_a_claimed_tick_whose_job_is_missing_is_enqueued_again(coord: JobQueueCoordinator,
                                                               redis_client: redis.Redis) -> None:
    coord.create_queue("reports")
    coord.schedule_recurring_job("reports", "digest", {}, every=1000, key="k")
    entry = coord.keys.beat_entry("reports", "k")
    tick_ms = 1_780_000_000_000
    # A beat that died between claiming the tick and enqueueing its job leaves the tick claimed.
    coord._recurring._tick(keys=[entry], args=["claim", tick_ms, 32])
    assert coord.get_job("reports", run_id("k", tick_ms)) is None
    assert coord._recurring.fire("reports", "k", tick_ms) == "again"
    assert coord.get_job("reports", run_id("k", tick_ms)) is not None
    assert coord.get_recurring_jobs()[0].run_count == 1  # counted once
    # A beat that takes over fires a later tick: the orphaned claim's run is enqueued with it.
    coord._recurring._tick(keys=[entry], args=["claim", tick_ms + 1000, 32])
    assert coord._recurring.fire("reports", "k", tick_ms + 5000) == "claimed"
    assert coord.get_job("reports", run_id("k", tick_ms + 1000)).created_at == from_ms(tick_ms + 1000)
    assert coord.get_job("reports", run_id("k", tick_ms + 5000)) is not None
    assert coord.get_recurring_jobs()[0].run_count == 3
    assert coord.get_queue_status("reports").counts.waiting == 3
    assert coord._recurring.fire("reports", "k", tick_ms + 6000) == "claimed"
    assert coord.get_queue_status("reports").counts.waiting == 4  # nothing pending any more


def test_limit_counts_runs_not_fire_calls(coord: JobQueueCoordinator) -> None:
    coord.create_queue("reports")
    coord.schedule_recurring_job("reports", "digest", {}, every=1000, key="k", limit=2)
    base = 1_780_000_000_000
    assert coord._recurring.fire("reports", "k", base) == "claimed"
    assert coord._recurring.fire("reports", "k", base) == "done"
    assert coord._recurring.fire("reports", "k", base + 1000) == "last"
    assert coord._recurring.fire("reports", "k", base + 2000) == "limit"
    assert coord.get_queue_status("reports").counts.waiting == 2
    [stored] = coord.get_recurring_jobs()
    assert (stored.run_count, stored.next_run) == (2, None)


def test_removed_schedule_fires_nothing(coord: JobQueueCoordinator) -> None:
    coord.create_queue("reports")
    coord.schedule_recurring_job("reports", "digest", {}, every=1000, key="k")
    coord.remove_recurring_job("reports", "k")
    assert coord._recurring.fire("reports", "k", 1_780_000_000_000) == "removed"
    assert coord.get_queue_status("reports").counts.waiting == 0


def test_next_run_respects_start_and_end(coord: JobQueueCoordinator) -> None:
    coord.create_queue("reports")
    start = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=2)
    job = coord.schedule_recurring_job("reports", "digest", {}, every=3_600_000, start_date=start,
                                       end_date=start + timedelta(hours=3))
    assert job.next_run == start
    ended = coord.schedule_recurring_job("reports", "old", {}, every=1000,
                                         start_date=start - timedelta(days=10),
                                         end_date=start - timedelta(days=9))
    assert ended.next_run is None


def test_managed_workers_embed_a_beat_unless_told_not_to(coord: JobQueueCoordinator) -> None:
    spec = WorkerSpec(settings=coord.settings, queue="q", worker_id="w", node_name="n@h", options=WorkerOptions())
    assert "-B" in celery_argv(spec, "celery-q")
    spec = spec.model_copy(update={"options": WorkerOptions(embed_beat=False)})
    assert "-B" not in celery_argv(spec, "celery-q")
    assert coord.app.conf.beat_scheduler == "coordinator.runtime.beat_scheduler:CoordinatorScheduler"
    assert coord.app.conf.redbeat_key_prefix == coord.keys.beat_key_prefix


def test_a_fire_recorded_after_an_update_keeps_the_updated_next_run(coord: JobQueueCoordinator,
                                                                    redis_client: redis.Redis) -> None:
    coord.create_queue("q")
    coord.schedule_recurring_job("q", "t", {}, every=1000, key="k", limit=1)
    entry_key = coord.keys.beat_entry("q", "k")
    now = datetime.now(timezone.utc)
    # A beat loaded the entry, fired its one run and found the limit reached; meanwhile the
    # limit was raised: the beat must not mark the schedule finished.
    entry = RecurringEntry.from_key(entry_key, app=coord.app)
    updated = coord.schedule_recurring_job("q", "t", {}, every=1000, key="k", limit=5)
    assert updated.next_run is not None
    entry.advance(now, None)
    assert redis_client.zscore(coord.keys.beat_schedule, entry_key) == int(updated.next_run.timestamp())
    # With no update in between, the beat's word stands.
    RecurringEntry.from_key(entry_key, app=coord.app).advance(now, None)
    assert redis_client.zscore(coord.keys.beat_schedule, entry_key) == -1
    # A removed entry is not brought back.
    coord.remove_recurring_job("q", "k")
    entry.advance(now, now + timedelta(seconds=1))
    assert not redis_client.exists(entry_key)
    assert redis_client.zscore(coord.keys.beat_schedule, entry_key) is None
