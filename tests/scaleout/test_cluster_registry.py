"""The registry on a real Redis Cluster (three masters on loopback ports): every script gets all
its keys in KEYS and every queue's keys share one `{queue}` hash tag, so each state move runs on
the one node that owns the queue's slot.

This tests the registry only: kombu's Redis transport cannot use a cluster as a broker (its
BRPOP over several lists and its unacked hash assume one node), so a cluster deployment uses
RabbitMQ as the broker, whose messages the scripts leave in each queue's outbox (also tested).
"""

from __future__ import annotations

import json

import pytest
from redis.cluster import RedisCluster

from coordinator.models import JobOptions, QueueConfig, RateLimit, Retention
from coordinator.registry import Registry
from coordinator.clock import now_ms
from coordinator.registry import NewJob
from tests.support.cluster import RedisClusterGroup

PREFIX = "jqc"
QUEUES = ["alpha", "beta", "gamma", "delta", "epsilon"]


@pytest.fixture
def client(cluster: RedisClusterGroup):
    client = cluster.client()
    yield client
    client.close()


def new_job(job_id: str, due_ms: int = 0, priority: int = 3) -> NewJob:
    return NewJob(id=job_id, name="task", data_json=json.dumps({"id": job_id}),
                  options=JobOptions(priority=priority, max_retries=3), due_ms=due_ms)


def token(client: RedisCluster, registry: Registry, queue: str, job_id: str) -> int:
    return int(client.hget(registry.queue_keys(queue).job(job_id), "token"))


def state(registry: Registry, queue: str, job_id: str) -> str:
    job = registry.get_job(queue, job_id)
    assert job is not None
    return job.state.value


def test_queues_spread_over_several_masters(cluster: RedisClusterGroup) -> None:
    registry = Registry(cluster.client(), PREFIX)
    owners = {cluster.node_of(registry.queue_keys(queue).meta) for queue in QUEUES}
    assert len(owners) >= 2  # the scripts below really run on different nodes
    for queue in QUEUES:  # and every key of a queue sits with its meta hash
        qk = registry.queue_keys(queue)
        slot = cluster.nodes[0].client().cluster("keyslot", qk.meta)
        for key in (qk.job("x"), qk.lock("x"), qk.logs("x"), qk.events, qk.outbox, *qk.broker_lists):
            assert cluster.nodes[0].client().cluster("keyslot", key) == slot


@pytest.mark.parametrize("queue", QUEUES)
def test_every_script_runs_on_the_cluster(client: RedisCluster, queue: str) -> None:
    registry = Registry(client, PREFIX)
    qk = registry.queue_keys(queue)
    assert registry.save_queue(QueueConfig(name=queue)) is True
    assert queue in registry.queue_names()

    # enqueue: one now (its kombu message pushed in the same script), one delayed
    assert registry.enqueue(queue, [new_job("a"), new_job("b", due_ms=now_ms() + 3_600_000)]) == [True, True]
    assert registry.enqueue(queue, [new_job("a")]) == [False]
    assert client.llen(qk.broker_list(2)) == 1
    assert state(registry, queue, "b") == "delayed"

    # start + finish, fenced by token: the late second finish of the same attempt records nothing
    started = registry.start(queue, "a", token(client, registry, queue, "a"), "w1", "host-1", 5000, None)
    assert started.status == "active"
    assert registry.update_progress(queue, "a", started.job._token, {"pct": 50}) is True
    registry.add_log(queue, "a", "half way")
    assert registry.finish(queue, "a", started.job._token, "completed", payload='"ok"') is True
    assert registry.finish(queue, "a", started.job._token, "completed", payload='"again"') is False
    assert state(registry, queue, "a") == "completed"
    assert client.hget(qk.job("a"), "host") == "host-1"

    # promote one job at once; change its priority while waiting
    assert registry.promote(queue, "b") is True
    assert state(registry, queue, "b") == "waiting"
    assert registry.change_priority(queue, "b", 1) is True
    assert client.llen(qk.broker_list(0)) == 1

    # retry with back-off into delayed, the sweep promotes it, then it fails; retry and cancel
    tok = token(client, registry, queue, "b")
    assert registry.start(queue, "b", tok, "w1", "host-1", 5000, None).status == "active"
    assert registry.finish(queue, "b", tok, "retry", payload="boom", due_ms=now_ms() - 1) is True
    assert state(registry, queue, "b") == "delayed"
    assert registry.promote_due(queue) == 1
    tok = token(client, registry, queue, "b")
    assert registry.start(queue, "b", tok, "w1", "host-1", 5000, None).status == "active"
    assert registry.finish(queue, "b", tok, "failed", payload="boom") is True
    assert registry.retry(queue, "b") is True
    assert state(registry, queue, "b") == "waiting"
    assert registry.cancel(queue, "b") is True
    assert state(registry, queue, "b") == "cancelled"

    # pause parks a new job; resume + release dispatches it, under a rate limit too
    registry.set_paused(queue, True)
    registry.enqueue(queue, [new_job("c")])
    assert client.zscore(qk.parked, "c") is not None
    registry.set_paused(queue, False)
    assert registry.release_parked(queue, RateLimit(max=5, duration=1000)) == 1

    # a worker that lost its lock: recover_stalled puts the job back
    tok = token(client, registry, queue, "c")
    assert registry.start(queue, "c", tok, "w2", "host-2", 5000, None).status == "active"
    client.delete(qk.lock("c"))
    assert registry.recover_stalled(queue, max_stalled_count=1) == 1
    assert state(registry, queue, "c") == "waiting"
    assert registry.recover_unstarted(queue, older_than_ms=0) == []  # reads kombu's (empty) index

    # a stranded waiting job is re-dispatched by recover_orphans (called directly: no kombu here)
    moved = registry.scripts.recover_orphans(
        keys=[qk.parked, qk.meta, qk.events, *qk.broker_lists, qk.job("c")],
        args=[now_ms(), *registry.ops.dispatch_args(queue), registry.events_max_len,
              "c", token(client, registry, queue, "c")],
    )
    assert moved == ["c"]

    # poison and foreign tasks, then retention removes every finished job
    registry.record_poison(queue, b"\xff not json", "undecodable")
    assert registry.trim(queue, Retention(completed_count=0, failed_count=0)) >= 3
    assert registry.get_job(queue, "a") is None
    assert registry.counts(queue).waiting == 1


def test_outbox_claim_and_release_on_the_cluster(client: RedisCluster) -> None:
    """With a non-Redis broker the scripts write the queue's outbox; the relay claims it."""
    queue = "outboxed"
    registry = Registry(client, PREFIX, outbox=True)
    registry.save_queue(QueueConfig(name=queue))
    registry.enqueue(queue, [new_job("o1"), new_job("o2")])
    claimed = registry.claim_outbox(queue, 10, stale_ms=30_000)
    assert [json.loads(m)["headers"]["id"].split(".")[0] for m in claimed] == ["o1", "o2"]
    assert sorted(registry.claim_outbox(queue, 10, stale_ms=0)) == sorted(claimed)  # unconfirmed: again
    registry.release_outbox(queue, claimed)
    assert registry.claim_outbox(queue, 10, stale_ms=0) == []
    registry.delete_queue(queue)
    assert queue not in registry.queue_names()


def test_no_script_builds_a_key_name() -> None:
    """Every command's key is KEYS[...] or a local taken from KEYS: nothing concatenated into a key.

    Deduplication has the two exceptions: the job that stands for a key is known only once its
    record is read, so its hash is named from the job key prefix (``standingKey``), and a job
    names the record it holds in its "dedup" field (``record``). Both carry the queue's hash tag
    (checked below), so they live on the queue's slot; tests/scaleout/test_cluster_dedup.py runs
    them on a real cluster.
    """
    import re

    from coordinator.registry.scripts import SCRIPT_NAMES, script_source

    call = re.compile(r'redis\.call\("([A-Z]+)",\s*([^,)]+)')
    # q: a table of KEYS; g: the group records (groupKeys); cap[1]: a cap's lease set (capsFrom)
    from_keys = re.compile(r"^(KEYS\[[^\]]+\]|brokerKeys\[[^\]]+\]|q\.\w+|g\.\w+|cap\[1\])$")
    key_locals = re.compile(r"local ([\w, ]+?)\s*=\s*(.+)")
    groups = script_source("group_release")
    group_keys = re.search(r"local function groupKeys\(from\)\n  return \{(.*?)\}\nend", groups, re.S)
    assert group_keys and all(value.strip().startswith("KEYS[")
                              for value in re.findall(r"= ([^,}]+)", group_keys[1])), "groupKeys takes KEYS"
    assert re.search(r"caps\[\w+ \+ 1\] = \{KEYS\[", groups), "capsFrom takes lease sets from KEYS"
    for name in SCRIPT_NAMES:
        source = script_source(name)
        allowed = {"jobKey", "lockKey", "eventsKey", "parkedKey", "metaKey",  # parameters of _lib.lua
                   "dependentsKey", "flowboxKey", "indexKey", "cancelledKey", "metricsKey", "waitingKey",
                   "hashKey",  # decrementField of _groups.lua (given g.counts, g.active)
                   "standingKey", "record",  # deduplication's two, see the docstring
                   "d.record"}  # an enqueue's dedup record: KEYS[...] in dedupEntries
        for names, values in key_locals.findall(source):
            for var, value in zip((n.strip() for n in names.split(",")), values.split(",")):
                if var.endswith("Key") and not value.strip().startswith("KEYS[") \
                        and not value.strip().startswith("q.jobKeyPrefix .. "):
                    raise AssertionError(f"{name}.lua: {var} = {value.strip()} is not taken from KEYS")
        queue_table = re.search(r"local q = \{(.*?)\}\n", source, re.S)  # moveToWaiting's keys
        if queue_table:
            for field in ("waiting", "meta", "parked", "events"):
                value = re.search(rf"\b{field} = ([^,}}]+)", queue_table[1])
                assert value and value[1].strip().startswith("KEYS["), f"{name}.lua: q.{field} is not taken from KEYS"
        for command, first in call.findall(source):
            first = first.strip()
            assert from_keys.match(first) or first in allowed or re.fullmatch(r"q\.(waiting|meta|parked|events)", first), \
                f"{name}.lua: {command} on {first}"
    from coordinator.keys import QueueKeys

    queue_keys = QueueKeys("jqc", "photos")
    for built in (queue_keys.job_key_prefix + "some-id", queue_keys.dedup("user-7")):
        assert built.startswith(queue_keys.base + ":"), built  # the queue's hash tag, so its slot
