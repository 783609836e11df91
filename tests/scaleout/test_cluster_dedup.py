"""Deduplication on a real Redis Cluster: the dedup records share their queue's hash tag, so the
enqueue, finish and cancel scripts that read and free them run on the queue's one node."""

from __future__ import annotations

import json

import pytest
from redis.cluster import RedisCluster

from coordinator.dedup import DedupEntry
from coordinator.models import JobOptions, QueueConfig
from coordinator.registry import NewJob, Registry
from tests.support.cluster import RedisClusterGroup

PREFIX = "jqc-dedup"
QUEUES = ["alpha", "beta", "gamma"]


def new_job(job_id: str, mode: str = "until_finished", ttl_ms: int = 0) -> NewJob:
    return NewJob(id=job_id, name="task", data_json=json.dumps({"id": job_id}),
                  options=JobOptions(max_retries=0), dedup=DedupEntry("k", mode, ttl_ms, "last"),
                  due_ms=0)


@pytest.mark.parametrize("queue", QUEUES)
def test_dedup_scripts_run_on_the_cluster(cluster: RedisClusterGroup, queue: str) -> None:
    client: RedisCluster = cluster.client()
    registry = Registry(client, PREFIX)
    qk = registry.queue_keys(queue)
    assert cluster.nodes[0].client().cluster("keyslot", qk.dedup("k")) == \
        cluster.nodes[0].client().cluster("keyslot", qk.meta)
    registry.save_queue(QueueConfig(name=queue))
    assert registry.enqueue(queue, [new_job("a"), new_job("b")]) == [True, "a"]
    token = int(client.hget(qk.job("a"), "token"))
    assert registry.start(queue, "a", token, "w1", "host-1", 5000, None).status == "active"
    assert registry.finish(queue, "a", token, "completed", payload='"ok"') is True
    assert client.get(qk.dedup("k")) is None  # freed by finish.lua on the queue's node
    assert registry.enqueue(queue, [new_job("c")]) == [True]
    assert registry.cancel(queue, "c") is True
    assert client.get(qk.dedup("k")) is None
    assert registry.enqueue(queue, [new_job("d", "debounce", 60_000), new_job("e", "debounce", 60_000)]) == \
        [True, "d"]
    assert client.zscore(qk.index("delayed"), "d") is not None
    registry.delete_queue(queue)
    client.close()
