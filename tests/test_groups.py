"""Groups and concurrency caps (docs/fairness.md): validation that writes nothing, max_size,
pause/resume, the round-robin's fairness with real workers, caps held across processes and
returned after a SIGKILL, named limiters shared by queues, group rate limits."""

from __future__ import annotations

import json

import pydantic
import pytest
import redis

from coordinator import (
    Dedup,
    GroupConfig,
    GroupFullError,
    InvalidArgumentError,
    InvalidNameError,
    JobOptions,
    JobQueueCoordinator,
    JobState,
    RateLimit,
)
from group_processors import gauged
from tests.support.pools import events, kill_worker_group, process_running, wait_until


def _keys(client: redis.Redis, prefix: str) -> dict[str, str]:
    """Every key of the prefix with its type (what a refused call must leave as it was)."""
    return {key: client.type(key) for key in client.scan_iter(f"{prefix}*")}


def _broker_depth(coord: JobQueueCoordinator, queue: str) -> int:
    return sum(coord._redis.llen(key) for key in coord.keys.for_queue(queue).broker_lists)


@pytest.mark.parametrize("fields, named", [
    ({"group": ""}, "group"),
    ({"group": "x" * 129}, "group"),
    ({"group": "tenant\n42"}, "group"),
    ({"limits": ["api", "api"]}, "limits"),
    ({"limits": "api"}, "limits"),
    ({"limits": [""]}, "limits"),
    ({"group": "t", "dedup": Dedup(key="k", mode="debounce", ttl_ms=100)}, "group"),
])
def test_bad_group_or_limits_is_refused_and_writes_nothing(coord: JobQueueCoordinator, prefix: str,
                                                            redis_client: redis.Redis, fields: dict,
                                                            named: str) -> None:
    coord.create_queue("bad")
    before = _keys(redis_client, prefix)
    with pytest.raises((pydantic.ValidationError, InvalidArgumentError)) as refused:
        coord.enqueue_job("bad", {"n": 1}, **fields)
    assert named in str(refused.value)
    assert _keys(redis_client, prefix) == before


def test_unknown_limiter_and_bad_configs_are_refused_and_write_nothing(coord: JobQueueCoordinator, prefix: str,
                                                                       redis_client: redis.Redis) -> None:
    coord.create_queue("bad")
    coord.set_limiter("api:stripe", max_concurrent=2)
    before = _keys(redis_client, prefix)
    with pytest.raises(InvalidArgumentError, match="limits: no limiter named 'api:github'"):
        coord.enqueue_job("bad", {}, limits=["api:stripe", "api:github"])
    with pytest.raises(InvalidArgumentError, match="limits"):
        coord.enqueue_bulk("bad", [{"data": 1}, {"data": 2, "options": JobOptions(limits=["nope"])}])
    for max_concurrent in (0, -1, 1.5, True):
        with pytest.raises(InvalidArgumentError, match="max_concurrent"):
            coord.set_limiter("api:stripe", max_concurrent=max_concurrent)  # type: ignore[arg-type]
    with pytest.raises(InvalidNameError, match="limiter name"):
        coord.set_limiter("", max_concurrent=1)
    with pytest.raises(pydantic.ValidationError, match="concurrency"):
        GroupConfig(concurrency=0)
    with pytest.raises(pydantic.ValidationError, match="max_size"):
        GroupConfig(max_size=-3)
    with pytest.raises(pydantic.ValidationError, match="concurrency"):
        coord.create_queue("bad", concurrency=0)
    with pytest.raises(InvalidNameError, match="group"):
        coord.set_group_config("bad", "a\x00b", GroupConfig(concurrency=1))
    with pytest.raises(InvalidNameError, match="group"):
        coord.pause_group("bad", "")
    assert _keys(redis_client, prefix) == before
    assert [limiter.max_concurrent for limiter in coord.get_limiters()] == [2]


def test_group_max_size_refuses_the_whole_call(coord: JobQueueCoordinator, prefix: str,
                                               redis_client: redis.Redis) -> None:
    coord.create_queue("sized")
    coord.pause_queue("sized")  # nothing leaves the group: its size is what was enqueued
    coord.set_group_config("sized", "t1", GroupConfig(max_size=3))
    coord.enqueue_bulk("sized", [{"data": i, "options": JobOptions(group="t1")} for i in range(2)])
    before = _keys(redis_client, prefix)
    waiting = coord.get_queue_status("sized").counts.waiting
    with pytest.raises(GroupFullError, match="'t1'"):
        coord.enqueue_bulk("sized", [{"data": "other"}, *({"data": i, "options": JobOptions(group="t1")}
                                                           for i in range(2))])
    assert _keys(redis_client, prefix) == before
    assert coord.get_queue_status("sized").counts.waiting == waiting == 2
    coord.enqueue_job("sized", 3, group="t1")  # the third fits
    coord.enqueue_job("sized", 4, group="t2")  # another group is not limited by t1's size
    with pytest.raises(GroupFullError):
        coord.enqueue_job("sized", 5, group="t1")
    status = coord.get_queue_status("sized")
    assert {g.name: g.waiting for g in status.groups} == {"t1": 3, "t2": 1}
    assert status.group_count == 2


def test_paused_group_is_not_released_and_resume_releases_it(coord: JobQueueCoordinator) -> None:
    coord.create_queue("tenants")
    coord.pause_group("tenants", "t1")
    held = [coord.enqueue_job("tenants", i, group="t1") for i in range(3)]
    other = coord.enqueue_job("tenants", "x", group="t2")
    assert _broker_depth(coord, "tenants") == 1  # only t2's job reached the broker
    status = coord.get_queue_status("tenants")
    # a group's waiting jobs count whether still in the group or released and not started
    assert {(g.name, g.waiting, g.paused) for g in status.groups} == {("t1", 3, True), ("t2", 1, False)}
    coord.resume_group("tenants", "t1")
    assert _broker_depth(coord, "tenants") == 4
    assert all(coord.get_job("tenants", job.id).state is JobState.WAITING for job in [*held, other])
    kinds = [(e["event"], e.get("group")) for e in events(coord, "tenants") if e["event"].startswith("group_")]
    assert kinds == [("group_paused", "t1"), ("group_resumed", "t1")]


def test_group_window_keeps_a_burst_out_of_the_broker_and_priorities_hold_inside_a_group(
        coord: JobQueueCoordinator) -> None:
    coord.create_queue("burst", group_window=4)
    coord.enqueue_bulk("burst", [{"data": i, "options": JobOptions(group="big")} for i in range(50)])
    assert _broker_depth(coord, "burst") == 4
    urgent = coord.enqueue_job("burst", "urgent", group="big", priority=1)
    small = coord.enqueue_job("burst", "small", group="small")
    qk = coord.keys.for_queue("burst")
    coord._redis.delete(qk.group_window)  # as if the four were received: room for four more
    assert coord._registry.release_groups("burst") == 4
    released = [key for key in qk.broker_lists if coord._redis.llen(key)]
    assert coord._redis.llen(qk.broker_list(0)) == 1  # urgent went first of big's jobs
    assert any(urgent.id in message for message in coord._redis.lrange(qk.broker_list(0), 0, -1))
    assert any(small.id in message for key in released for message in coord._redis.lrange(key, 0, -1))


def _finish_order(coord: JobQueueCoordinator, prefix: str, queue: str, big: int) -> tuple[int, int]:
    """Two workers; ``big`` jobs of group big enqueued, then ten groups of 10: (where the last
    small job finished, where the big group's 300th did) in the order jobs finished."""
    for _ in range(2):
        coord.register_worker(queue, gauged, pool="threads", concurrency=2)
    order = f"{prefix}:test:order"
    coord.enqueue_bulk(queue, [{"data": {"order": order}, "options": JobOptions(group="big")} for _ in range(big)])
    coord.enqueue_bulk(queue, [{"data": {"order": order}, "options": JobOptions(group=f"small{g}")}
                               for g in range(10) for _ in range(10)])

    def finished() -> list[str]:
        return coord._redis.lrange(order, 0, -1)

    wait_until(lambda: finished().count("big") >= 300 and len(finished()) - finished().count("big") >= 100,
               timeout=240, what="300 big and every small job finished")
    done = finished()
    return max(i for i, group in enumerate(done) if group != "big"), [i for i, g in enumerate(done) if g == "big"][299]


def test_small_groups_finish_before_the_big_groups_300th_job(coord: JobQueueCoordinator, prefix: str) -> None:
    coord.create_queue("fair")
    last_small, big_300th = _finish_order(coord, prefix, "fair", 5000)
    assert last_small < big_300th, f"last small job finished at {last_small}, the big group's 300th at {big_300th}"


def test_without_the_window_the_burst_goes_first(coord: JobQueueCoordinator, prefix: str) -> None:
    """The control of the test above: a window as large as the burst lets it all into the broker
    before the small groups arrive, and they wait behind it."""
    coord.create_queue("unfair", group_window=1000)
    last_small, big_300th = _finish_order(coord, prefix, "unfair", 1000)
    assert last_small > big_300th


def test_queue_cap_holds_across_two_workers_of_two_processes(coord: JobQueueCoordinator, prefix: str) -> None:
    coord.create_queue("capped", concurrency=3)
    for _ in range(2):
        coord.register_worker("capped", gauged, pool="prefork", concurrency=2)
    gauge = f"{prefix}:test:gauge"
    jobs = coord.enqueue_bulk("capped", [{"data": {"gauge": gauge, "seconds": 0.4}} for _ in range(16)])
    finals = [coord.wait_for_job("capped", job.id, 120) for job in jobs]
    assert all(job.state is JobState.COMPLETED and job.attempts_made == 1 for job in finals)
    peak = int(coord._redis.get(f"{gauge}:peak"))
    assert peak == 3, f"at most 3 ran at once, and the cap was reached (peak {peak})"
    assert events(coord, "capped", "limited"), "jobs over the cap were parked"
    assert not events(coord, "capped", "retrying")
    assert coord.get_queue_status("capped").concurrency.active == 0


def test_a_sigkilled_workers_slot_comes_back(coord: JobQueueCoordinator, prefix: str) -> None:
    coord.create_queue("kill", concurrency=1)
    victim = coord.register_worker("kill", gauged, pool="prefork", concurrency=2)
    gauge = f"{prefix}:test:gauge"
    first = coord.enqueue_job("kill", {"gauge": gauge, "first_seconds": 600, "seconds": 0.05})
    wait_until(lambda: coord.get_job("kill", first.id).state is JobState.ACTIVE, what="first job active")
    assert coord.get_queue_status("kill").concurrency.active == 1
    second = coord.enqueue_job("kill", {"gauge": gauge, "seconds": 0.05})
    wait_until(lambda: coord.get_queue_status("kill").capped == 1, what="second job parked over the cap")
    assert coord.get_job("kill", second.id).state is JobState.WAITING

    kill_worker_group(victim.pid)
    wait_until(lambda: not process_running(victim.pid), what="the worker is dead")
    assert coord._redis.decr(gauge) == 0  # the killed run never left the gauge
    assert coord.wait_for_job("kill", second.id, 60).state is JobState.COMPLETED
    assert coord.wait_for_job("kill", first.id, 60).state is JobState.COMPLETED
    assert [e["job_id"] for e in events(coord, "kill", "stalled")] == [first.id]
    assert int(coord._redis.get(f"{gauge}:peak")) == 1
    assert coord.get_job("kill", second.id).attempts_made == 1  # parked, no attempt spent


def test_named_limiter_is_shared_by_two_queues(coord: JobQueueCoordinator, prefix: str) -> None:
    coord.set_limiter("api:stripe", max_concurrent=2)
    gauge = f"{prefix}:test:gauge"
    jobs = []
    for queue in ("billing", "refunds"):
        coord.create_queue(queue)
        coord.register_worker(queue, gauged, pool="threads", concurrency=3)
        jobs += [(queue, job) for job in coord.enqueue_bulk(queue, [
            {"data": {"gauge": gauge, "seconds": 0.3}, "options": JobOptions(limits=["api:stripe"])}
            for _ in range(6)])]
    finals = [coord.wait_for_job(queue, job.id, 120) for queue, job in jobs]
    assert all(job.state is JobState.COMPLETED and job.attempts_made == 1 for job in finals)
    assert int(coord._redis.get(f"{gauge}:peak")) == 2
    assert any(e.get("limit") == "api:stripe" for q in ("billing", "refunds") for e in events(coord, q, "limited"))
    assert [(limiter.name, limiter.active) for limiter in coord.get_limiters()] == [("api:stripe", 0)]


def test_group_concurrency_and_rate_limit(coord: JobQueueCoordinator, prefix: str) -> None:
    coord.create_queue("shaped")
    coord.set_group_config("shaped", "one-at-a-time", GroupConfig(concurrency=1))
    coord.set_group_config("shaped", "slow", GroupConfig(limiter=RateLimit(max=2, duration=1000)))
    coord.register_worker("shaped", gauged, pool="threads", concurrency=4)
    gauge = f"{prefix}:test:gauge"
    serial = coord.enqueue_bulk("shaped", [{"data": {"gauge": gauge, "seconds": 0.2},
                                            "options": JobOptions(group="one-at-a-time")} for _ in range(4)])
    slow = coord.enqueue_bulk("shaped", [{"data": {}, "options": JobOptions(group="slow")} for _ in range(6)])
    finals = [coord.wait_for_job("shaped", job.id, 120) for job in [*serial, *slow]]
    assert all(job.state is JobState.COMPLETED for job in finals)
    assert int(coord._redis.get(f"{gauge}:peak")) == 1
    starts = sorted(int(job.processed_on.timestamp() * 1000) for job in finals[len(serial):])
    # 2 per fixed window of 1 s: the 5th job is released two windows after the 1st's
    assert starts[4] - starts[0] >= 1000, starts


def test_cli_lists_groups_pauses_and_resumes_them_and_shows_limiters(coord: JobQueueCoordinator, prefix: str) -> None:
    from click.testing import CliRunner

    from coordinator.cli import _command_names, main
    from tests.support.env import REDIS_URL

    assert {"groups list", "groups pause", "groups resume", "limiters"} <= set(_command_names())
    env = {"REDIS_URL": REDIS_URL, "JQC_PREFIX": prefix, "JQC_APP": ""}
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(main, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    coord.create_queue("cli", concurrency=4)
    coord.pause_queue("cli")
    coord.set_limiter("api:stripe", max_concurrent=5)
    coord.enqueue_bulk("cli", [{"data": i, "options": JobOptions(group="tenant-42")} for i in range(3)])
    assert "paused" in run("groups", "pause", "cli", "tenant-42")
    table = run("groups", "list", "cli")
    assert "tenant-42" in table and "paused" in table and "queue cap: 0 of 4 active" in table
    shown = json.loads(run("groups", "list", "cli", "--json"))
    assert shown["groups"][0] == {"name": "tenant-42", "waiting": 3, "active": 0, "paused": True,
                                  "oldest_waiting_s": shown["groups"][0]["oldest_waiting_s"]}
    assert shown["group_count"] == 1 and shown["concurrency"]["max_concurrent"] == 4
    run("groups", "resume", "cli", "tenant-42")
    assert not coord.get_queue_status("cli").groups[0].paused
    assert "api:stripe  0 of 5 active" in run("limiters")


@pytest.mark.asyncio
async def test_the_async_client_enqueues_grouped_and_limited_jobs(coord: JobQueueCoordinator, prefix: str) -> None:
    from coordinator import AsyncJobQueueCoordinator
    from tests.support.env import REDIS_URL

    coord.create_queue("aio")
    async with AsyncJobQueueCoordinator(REDIS_URL, prefix=prefix) as acoord:
        await acoord.set_limiter("api", max_concurrent=1)
        await acoord.pause_group("aio", "t1")
        job = await acoord.enqueue_job("aio", {"n": 1}, group="t1", limits=["api"])
        assert job.options.group == "t1" and job.options.limits == ("api",)
        with pytest.raises(InvalidArgumentError, match="limits"):
            await acoord.enqueue_job("aio", {}, limits=["unknown"])
        await acoord.set_group_config("aio", "t1", GroupConfig(max_size=1))
        with pytest.raises(GroupFullError):
            await acoord.enqueue_job("aio", {"n": 2}, group="t1")
        status = await acoord.get_queue_status("aio")
        assert [(g.name, g.waiting, g.paused) for g in status.groups] == [("t1", 1, True)]
        await acoord.resume_group("aio", "t1")
    assert _broker_depth(coord, "aio") == 1


def test_cancel_and_reprioritise_a_job_waiting_in_its_group(coord: JobQueueCoordinator) -> None:
    coord.create_queue("edit", group_window=1)
    first, second, third = (coord.enqueue_job("edit", i, group="g") for i in range(3))  # first released
    coord.enqueue_job("edit", "x", group="h")
    assert coord.cancel_job("edit", second.id)
    assert coord.update_job_priority("edit", third.id, 1)
    status = coord.get_queue_status("edit")
    assert {g.name: g.waiting for g in status.groups} == {"g": 2, "h": 1}
    qk = coord.keys.for_queue("edit")
    coord._redis.delete(qk.group_window)
    assert coord._registry.release_groups("edit") == 1
    released = "".join(coord._redis.lrange(qk.broker_list(0), 0, -1))  # priority 1: level 0
    assert third.id in released, "g (first at equal pass) serves its priority-1 job before older ones"
