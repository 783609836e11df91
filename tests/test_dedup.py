"""Deduplication (`Dedup`): until_finished, ttl (throttle) and debounce, with real workers; the
deduplicated event and counts; bad input writes nothing."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from coordinator import (
    AsyncJobQueueCoordinator,
    Dedup,
    InvalidArgumentError,
    JobOptions,
    JobQueueCoordinator,
    JobState,
)
from coordinator.cli import main as cli_main
from coordinator.dedup import derived_key
from coordinator.exporter import register_collector
from tests import dedup_processors
from tests.support.env import REDIS_URL
from tests.support.jobs import record_data
from tests.support.waiting import wait_until

WAIT_S = 30


def runs(redis_client: redis.Redis, prefix: str) -> list[dict[str, Any]]:
    """The runs `dedup_processors.record_run` recorded, in order."""
    return [json.loads(entry) for entry in redis_client.lrange(f"{prefix}:test:runs", 0, -1)]


def events(coord: JobQueueCoordinator, queue: str, name: str) -> list[tuple[str, dict[str, str]]]:
    return [(e.job_id, e.data) for e in coord.events(queue) if e.event == name]


def keys_of(redis_client: redis.Redis, prefix: str) -> dict[str, Any]:
    """Every key of the prefix with a dump of its value: a write anywhere changes it."""
    return {key: redis_client.dump(key) for key in redis_client.scan_iter(f"{prefix}:*")}


# ----------------------------------------------------------------------------- until_finished


def test_until_finished_returns_the_standing_job_until_it_completes(coord: JobQueueCoordinator, prefix,
                                                                    redis_client) -> None:
    coord.create_queue("q")
    first = coord.enqueue_job("q", record_data(prefix, seconds=1.0), dedup=Dedup(key="user-7"))
    assert not first.deduplicated
    waiting_dup = coord.enqueue_job("q", record_data(prefix, n=2), dedup=Dedup(key="user-7"))
    assert waiting_dup.id == first.id and waiting_dup.deduplicated and waiting_dup.state is JobState.WAITING
    assert waiting_dup.data == first.data  # the standing job, as it is
    coord.register_worker("q", dedup_processors.record_run, pool="solo")
    wait_until(lambda: coord.get_job("q", first.id).state is JobState.ACTIVE, what="first job active")
    active_dup = coord.enqueue_job("q", record_data(prefix, n=3), JobOptions(dedup=Dedup(key="user-7")))
    assert active_dup.id == first.id and active_dup.deduplicated and active_dup.state is JobState.ACTIVE
    assert coord.wait_for_job("q", first.id, timeout=WAIT_S).state is JobState.COMPLETED
    after = coord.enqueue_job("q", record_data(prefix, n=4), dedup=Dedup(key="user-7"))
    assert after.id != first.id and not after.deduplicated
    assert coord.wait_for_job("q", after.id, timeout=WAIT_S).state is JobState.COMPLETED
    assert [run["id"] for run in runs(redis_client, prefix)] == [first.id, after.id]
    assert events(coord, "q", "deduplicated") == [(first.id, {"key": "user-7", "mode": "until_finished"})] * 2
    assert coord.get_queue_status("q").deduplicated == 2


def test_a_retry_keeps_the_key_and_a_final_failure_releases_it(coord: JobQueueCoordinator, prefix,
                                                               redis_client) -> None:
    coord.create_queue("q")
    coord.register_worker("q", dedup_processors.record_run, pool="solo")
    dedup = Dedup(key="flaky")
    job = coord.enqueue_job("q", record_data(prefix, failures=1), dedup=dedup, max_retries=1,
                            backoff={"type": "fixed", "delay": 1500})
    wait_until(lambda: coord.get_job("q", job.id).attempts_made == 1
               and coord.get_job("q", job.id).state is JobState.DELAYED, what="first attempt failed, retry due")
    during_retry = coord.enqueue_job("q", record_data(prefix), dedup=dedup)
    assert during_retry.id == job.id and during_retry.deduplicated
    assert coord.wait_for_job("q", job.id, timeout=WAIT_S).state is JobState.COMPLETED
    # a job that fails for good releases the key too
    doomed = coord.enqueue_job("q", record_data(prefix, failures=5), dedup=dedup, max_retries=0)
    assert doomed.id != job.id and not doomed.deduplicated
    assert coord.wait_for_job("q", doomed.id, timeout=WAIT_S).state is JobState.FAILED
    fresh = coord.enqueue_job("q", record_data(prefix), dedup=dedup)
    assert fresh.id not in (job.id, doomed.id) and not fresh.deduplicated
    assert coord.wait_for_job("q", fresh.id, timeout=WAIT_S).state is JobState.COMPLETED
    assert [run["id"] for run in runs(redis_client, prefix)] == [job.id, job.id, doomed.id, fresh.id]


def test_cancel_and_remove_on_complete_release_the_key(coord: JobQueueCoordinator, prefix, redis_client) -> None:
    coord.create_queue("q")
    first = coord.enqueue_job("q", record_data(prefix), dedup=Dedup(key="k"))
    assert coord.cancel_job("q", first.id)
    second = coord.enqueue_job("q", record_data(prefix), dedup=Dedup(key="k"), remove_on_complete=True)
    assert second.id != first.id and not second.deduplicated
    coord.register_worker("q", dedup_processors.record_run, pool="solo")
    wait_until(lambda: coord.get_job("q", second.id) is None, what="second job completed and removed")
    third = coord.enqueue_job("q", record_data(prefix), dedup=Dedup(key="k"))
    assert third.id not in (first.id, second.id) and not third.deduplicated
    assert coord.wait_for_job("q", third.id, timeout=WAIT_S).state is JobState.COMPLETED
    assert [run["id"] for run in runs(redis_client, prefix)] == [second.id, third.id]
    assert not redis_client.exists(coord._registry.queue_keys("q").dedup("k"))  # released, not left behind


def test_until_finished_with_a_ttl_lapses(coord: JobQueueCoordinator) -> None:
    coord.create_queue("q")
    capped = Dedup(key="k", ttl_ms=300)
    first = coord.enqueue_job("q", {"n": 1}, dedup=capped)
    assert coord.enqueue_job("q", {"n": 2}, dedup=capped).id == first.id
    time.sleep(0.4)
    later = coord.enqueue_job("q", {"n": 3}, dedup=capped)  # the first still waits: the key lapsed
    assert later.id != first.id and not later.deduplicated
    assert coord.get_job("q", first.id).state is JobState.WAITING


def test_an_expired_job_releases_the_key(coord: JobQueueCoordinator, prefix, redis_client) -> None:
    coord.create_queue("q")
    record = coord._registry.queue_keys("q").dedup("k")
    job = coord.schedule_job("q", "late", {"n": 1}, delay=60_000, expires=100, dedup=Dedup(key="k"))
    assert redis_client.get(record) == job.id
    time.sleep(0.2)
    assert coord.promote_job("q", job.id)  # due now, past its deadline: expired, not run
    assert coord.get_job("q", job.id).state is JobState.CANCELLED
    assert not redis_client.exists(record)
    fresh = coord.enqueue_job("q", {"n": 2}, dedup=Dedup(key="k"))
    assert fresh.id != job.id and not fresh.deduplicated and redis_client.get(record) == fresh.id


def test_keys_derived_from_fields_and_scoped_per_queue(coord: JobQueueCoordinator) -> None:
    coord.create_queue("a")
    coord.create_queue("b")
    by_user = Dedup(fields=["user", "kind"])
    first = coord.enqueue_job("a", {"user": 7, "kind": "mail", "body": "one"}, dedup=by_user)
    same = coord.enqueue_job("a", {"kind": "mail", "body": "two", "user": 7}, dedup=Dedup(fields=["kind", "user"]))
    other_user = coord.enqueue_job("a", {"user": 8, "kind": "mail"}, dedup=by_user)
    other_queue = coord.enqueue_job("b", {"user": 7, "kind": "mail"}, dedup=by_user)
    assert same.id == first.id and same.deduplicated
    assert other_user.id != first.id and not other_user.deduplicated
    assert other_queue.id != first.id and not other_queue.deduplicated
    key = derived_key(["user", "kind"], {"user": 7, "kind": "mail"})
    assert key == derived_key(["kind", "user"], {"kind": "mail", "user": 7, "x": 1}) and len(key) == 64
    assert events(coord, "a", "deduplicated") == [(first.id, {"key": key, "mode": "until_finished"})]


def test_bulk_with_duplicates_returns_the_first(coord: JobQueueCoordinator) -> None:
    coord.create_queue("q")
    jobs = coord.enqueue_bulk("q", [
        {"data": {"n": 1}, "options": {"dedup": {"key": "x"}}},
        {"data": {"n": 2}},
        {"data": {"n": 3}, "options": JobOptions(dedup=Dedup(key="x"))},
        {"data": {"n": 4}, "options": {"dedup": {"key": "y"}}},
    ])
    assert jobs[2].id == jobs[0].id and jobs[2].deduplicated and jobs[2].data == {"n": 1}
    assert len({jobs[0].id, jobs[1].id, jobs[3].id}) == 3
    assert [job.deduplicated for job in jobs] == [False, False, True, False]
    assert coord.get_queue_status("q").counts.waiting == 3
    assert coord.get_queue_status("q").deduplicated == 1


# ----------------------------------------------------------------------------- debounce


def test_100_debounce_enqueues_in_a_second_run_once_with_the_last_data(coord: JobQueueCoordinator, prefix,
                                                                       redis_client) -> None:
    coord.create_queue("q")
    coord.register_worker("q", dedup_processors.record_run, pool="solo")
    dedup = Dedup(key="save-doc", mode="debounce", ttl_ms=1000)
    returned = []
    for i in range(100):
        returned.append(coord.enqueue_job("q", record_data(prefix, i=i), dedup=dedup))
        time.sleep(0.01)
    standing = returned[0]
    assert standing.state is JobState.DELAYED and not standing.deduplicated
    assert {job.id for job in returned} == {standing.id}
    assert all(job.deduplicated for job in returned[1:])
    assert returned[-1].data["i"] == 99  # the returned snapshot carries the replaced data
    done = coord.wait_for_job("q", standing.id, timeout=WAIT_S)
    assert done.state is JobState.COMPLETED and done.data["i"] == 99
    assert [(run["id"], run["data"]["i"]) for run in runs(redis_client, prefix)] == [(standing.id, 99)]
    dedup_events = events(coord, "q", "deduplicated")
    assert len(dedup_events) == 99 and {job_id for job_id, _ in dedup_events} == {standing.id}
    assert all(data["mode"] == "debounce" and data["key"] == "save-doc" and int(data["due"]) > 0
               for _, data in dedup_events)
    assert coord.get_queue_status("q").deduplicated == 99


def test_debounce_keep_first_and_after_start(coord: JobQueueCoordinator, prefix, redis_client) -> None:
    coord.create_queue("q")
    keep_first = Dedup(key="k", mode="debounce", ttl_ms=300, keep="first")
    first = coord.enqueue_job("q", record_data(prefix, i=1, seconds=1.5), dedup=keep_first)
    again = coord.enqueue_job("q", record_data(prefix, i=2, seconds=1.5), dedup=keep_first)
    assert again.id == first.id and again.data["i"] == 1
    coord.register_worker("q", dedup_processors.record_run, pool="solo")
    wait_until(lambda: coord.get_job("q", first.id).state is JobState.ACTIVE, what="debounced job started")
    # it started: a new enqueue is a new debounce job, not a change to the running one
    later = coord.enqueue_job("q", record_data(prefix, i=3), dedup=keep_first)
    assert later.id != first.id and not later.deduplicated and later.state is JobState.DELAYED
    assert coord.wait_for_job("q", later.id, timeout=WAIT_S).state is JobState.COMPLETED
    assert [(run["id"], run["data"]["i"]) for run in runs(redis_client, prefix)] == [(first.id, 1), (later.id, 3)]
    assert coord.get_job("q", first.id).state is JobState.COMPLETED


def test_debounce_sends_a_waiting_job_back_to_delayed(coord: JobQueueCoordinator, prefix, redis_client) -> None:
    coord.create_queue("q")
    dedup = Dedup(key="k", mode="debounce", ttl_ms=200)
    first = coord.enqueue_job("q", record_data(prefix, i=1), dedup=dedup)
    coord.promote_job("q", first.id)  # waiting now, its message sent, no worker yet
    assert coord.get_job("q", first.id).state is JobState.WAITING
    again = coord.enqueue_job("q", record_data(prefix, i=2), dedup=dedup)
    assert again.id == first.id and again.state is JobState.DELAYED and again.data["i"] == 2
    coord.register_worker("q", dedup_processors.record_run, pool="solo")
    assert coord.wait_for_job("q", first.id, timeout=WAIT_S).state is JobState.COMPLETED
    witness = coord.enqueue_job("q", record_data(prefix, i=3))  # the stale message ran nothing before it
    assert coord.wait_for_job("q", witness.id, timeout=WAIT_S).state is JobState.COMPLETED
    assert [(run["id"], run["data"]["i"]) for run in runs(redis_client, prefix)] == [(first.id, 2), (witness.id, 3)]


# ----------------------------------------------------------------------------- ttl (throttle)


def test_a_throttle_key_runs_once_per_ttl(coord: JobQueueCoordinator, prefix, redis_client) -> None:
    coord.create_queue("q")
    coord.register_worker("q", dedup_processors.record_run, pool="solo")
    ttl_ms = 700
    dedup = Dedup(key="digest", mode="ttl", ttl_ms=ttl_ms)
    calls = []  # (sent, returned, job)
    started = time.monotonic()
    while time.monotonic() - started < 2.6 * ttl_ms / 1000:
        sent = time.monotonic()
        job = coord.enqueue_job("q", record_data(prefix), dedup=dedup)
        calls.append((sent, time.monotonic(), job))
        time.sleep(0.02)
    window_starts = [(sent, back, job) for sent, back, job in calls if not job.deduplicated]
    assert len(window_starts) >= 3  # 2.6 TTLs of calls: at least three windows
    for (prev_sent, prev_back, prev), (sent, back, job) in zip(window_starts, window_starts[1:]):
        assert job.id != prev.id
        assert back - prev_sent >= ttl_ms / 1000  # no new job within a TTL of the previous one
    for sent, back, job in calls:  # every call returns the job of the window it fell in
        owner = [start for start in window_starts if start[0] <= sent][-1]
        assert job.id == owner[2].id
        assert sent - owner[1] <= ttl_ms / 1000 or not job.deduplicated
    ids = [job.id for _, _, job in window_starts]
    for job_id in ids:
        assert coord.wait_for_job("q", job_id, timeout=WAIT_S).state is JobState.COMPLETED
    assert [run["id"] for run in runs(redis_client, prefix)] == ids  # each window's job ran once
    assert coord.get_queue_status("q").deduplicated == len(calls) - len(ids)


def test_throttle_key_stands_after_its_job_finished_and_was_removed(coord: JobQueueCoordinator, prefix) -> None:
    coord.create_queue("q")
    coord.register_worker("q", dedup_processors.record_run, pool="solo")
    dedup = Dedup(key="t", mode="ttl", ttl_ms=60_000)
    first = coord.enqueue_job("q", record_data(prefix), dedup=dedup, remove_on_complete=True)
    wait_until(lambda: coord.get_job("q", first.id) is None, what="job completed and removed")
    again = coord.enqueue_job("q", record_data(prefix), dedup=dedup)
    assert again.id == first.id and again.deduplicated and again.state is JobState.COMPLETED


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("fields", "field_named"), [
    ({"dedup": {"key": "k", "mode": "sometimes"}}, "mode"),
    ({"dedup": {"key": "k", "mode": "ttl", "ttl_ms": 0}}, "ttl_ms"),
    ({"dedup": {"key": "k", "mode": "debounce", "ttl_ms": -5}}, "ttl_ms"),
    ({"dedup": {"key": "k", "mode": "ttl"}}, "ttl_ms"),
    ({"dedup": {"key": ""}}, "key"),
    ({"dedup": {"key": "   "}}, "key"),
    ({"dedup": {"key": "x" * 201}}, "key"),
    ({"dedup": {}}, "key, fields"),
    ({"dedup": {"key": "k", "fields": ["user"]}}, "key, fields"),
    ({"dedup": {"fields": []}}, "fields"),
    ({"dedup": {"fields": ["user", "user"]}}, "fields"),
    ({"dedup": {"key": "k", "keep": "first"}}, "keep"),
    ({"dedup": {"key": "k", "keep": "middle", "mode": "debounce", "ttl_ms": 5}}, "keep"),
    ({"dedup": {"key": "k", "mode": "debounce", "ttl_ms": 5}, "delay": 100}, "delay"),
    ({"dedup": {"key": "k", "tll_ms": 5}}, "tll_ms"),
])
def test_bad_dedup_options_name_the_field_and_write_nothing(coord: JobQueueCoordinator, prefix, redis_client,
                                                            fields: dict[str, Any], field_named: str) -> None:
    coord.create_queue("q")
    coord.enqueue_job("q", {"user": 1}, dedup=Dedup(key="k"))
    before = keys_of(redis_client, prefix)
    with pytest.raises(ValidationError, match=field_named):
        coord.enqueue_job("q", {"user": 1}, **fields)
    with pytest.raises(ValidationError, match=field_named):
        coord.enqueue_bulk("q", [{"data": {"user": 2}}, {"data": {"user": 1}, "options": fields}])
    assert keys_of(redis_client, prefix) == before


def test_fields_missing_from_data_name_the_field_and_write_nothing(coord: JobQueueCoordinator, prefix,
                                                                   redis_client) -> None:
    coord.create_queue("q")
    before = keys_of(redis_client, prefix)
    with pytest.raises(InvalidArgumentError, match="dedup.fields: 'tenant' is not in the job's data"):
        coord.enqueue_job("q", {"user": 1}, dedup=Dedup(fields=["user", "tenant"]))
    with pytest.raises(InvalidArgumentError, match="dedup.fields: the job's data must be an object"):
        coord.enqueue_job("q", [1, 2], dedup=Dedup(fields=["user"]))
    with pytest.raises(InvalidArgumentError, match="'tenant'"):  # the good first item is not written either
        coord.enqueue_bulk("q", [{"data": {"user": 1}, "options": {"dedup": {"fields": ["user"]}}},
                                 {"data": {"user": 2}, "options": {"dedup": {"fields": ["tenant"]}}}])
    with pytest.raises(InvalidArgumentError, match="dedup: not supported on depends_on jobs"):
        other = coord.enqueue_job("q", {"user": 3})
        before = keys_of(redis_client, prefix)
        coord.enqueue_job("q", {"user": 1}, depends_on=[("q", other.id)], dedup=Dedup(key="k"))
    assert keys_of(redis_client, prefix) == before


# ----------------------------------------------------------------------------- visible


def test_count_in_the_cli_and_the_exporter(coord: JobQueueCoordinator, prefix) -> None:
    coord.create_queue("q")
    for _ in range(3):
        coord.enqueue_job("q", {"n": 1}, dedup=Dedup(fields=["n"]))
    registry = CollectorRegistry(auto_describe=False)
    register_collector(coord, registry)
    assert registry.get_sample_value("jqc_jobs_deduplicated_total", {"queue": "q"}) == 2
    env = {"REDIS_URL": REDIS_URL, "JQC_PREFIX": prefix}
    result = CliRunner().invoke(cli_main, ["status", "--json"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    queues = json.loads(result.output)["queues"]
    assert [q["deduplicated"] for q in queues if q["name"] == "q"] == [2]
    table = CliRunner().invoke(cli_main, ["status"], env=env, catch_exceptions=False)
    assert "deduplicated" in table.output


# ----------------------------------------------------------------------------- asyncio


@pytest.mark.asyncio
async def test_the_async_client_deduplicates(coord: JobQueueCoordinator, prefix) -> None:
    coord.create_queue("q")
    async with AsyncJobQueueCoordinator(REDIS_URL, prefix=prefix) as acoord:
        first = await acoord.enqueue_job("q", {"user": 1}, dedup=Dedup(fields=["user"]))
        again = await acoord.enqueue_job("q", {"user": 1, "more": True}, dedup=Dedup(fields=["user"]))
        bulk = await acoord.enqueue_bulk("q", [{"data": {"user": 1}, "options": {"dedup": {"fields": ["user"]}}},
                                               {"data": {"user": 2}, "options": {"dedup": {"fields": ["user"]}}}])
        assert not first.deduplicated and again.id == first.id and again.deduplicated
        assert bulk[0].id == first.id and bulk[0].deduplicated and not bulk[1].deduplicated
        assert (await acoord.get_queue_status("q")).deduplicated == 2
    assert coord.get_queue_status("q").counts.waiting == 2
