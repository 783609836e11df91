"""Flows on a real Redis Cluster (three masters on loopback ports).

How a flow that spans queues stays correct there: every script runs on one slot (the child's
queue, the waiter's queue, or the batch's ``{b:<id>}`` tag). The script that finishes a child
writes its outcome to the child queue's flow box in the same step (the outbox pattern); the
hand-off applies it on the waiter's slot with an idempotent script, then removes it. Here the
queues of one flow sit on different masters, so a cross-slot script would fail with CROSSSLOT.
"""

from __future__ import annotations

import json

import pytest
from celery import Celery
from redis.cluster import RedisCluster

from coordinator.flows.batch import open_batch, read_batch
from coordinator.flows.handoff import HandOff
from coordinator.flows.models import FlowJob
from coordinator.flows.producer import FlowProducer
from coordinator.heartbeats import HeartbeatStore
from coordinator.models import QueueConfig
from coordinator.queues import QueueManager
from coordinator.registry import Registry
from coordinator.registry.flows import FlowRegistry
from coordinator.scheduler import JobScheduler
from coordinator.settings import Settings
from tests.support.cluster import RedisClusterGroup

QUEUES = ["alpha", "beta", "gamma", "delta", "epsilon"]


@pytest.fixture
def producer(cluster: RedisClusterGroup):
    client: RedisCluster = cluster.client()
    registry = Registry(client, "jqcf", outbox=True)  # a cluster deployment's broker is RabbitMQ
    settings = Settings(url=f"redis://127.0.0.1:{cluster.nodes[0].port}/0", prefix="jqcf")
    queues = QueueManager(registry, settings, HeartbeatStore(client, registry.keys))
    for queue in QUEUES:
        queues.create_queue(QueueConfig(name=queue))
    jobs = JobScheduler(registry, queues, settings, Celery(set_as_current=False), lambda queue: queue)
    flows = FlowRegistry(registry)
    made = FlowProducer(registry, flows, jobs, HandOff(flows))
    registry.on_handoff = made.handoff.apply_written
    yield made
    client.close()


def run_waiting(producer: FlowProducer, queue: str, result=lambda job: job.data) -> list[str]:
    """Start and finish every waiting job of a queue through the registry's scripts."""
    registry = producer.registry
    ran = []
    for job in registry.get_jobs(queue, ["waiting"]):
        token = int(registry.client.hget(registry.queue_keys(queue).job(job.id), "token"))
        started = registry.start(queue, job.id, token, "w", "h", 5000, None)
        assert started.status == "active"
        assert registry.finish(queue, job.id, token, "completed", payload=json.dumps(result(started.job)))
        ran.append(job.id)
    return ran


def test_the_flow_spans_masters(cluster: RedisClusterGroup, producer: FlowProducer) -> None:
    owners = {cluster.node_of(producer.registry.queue_keys(queue).meta) for queue in QUEUES}
    assert len(owners) >= 2


def test_a_flow_across_queues_on_several_masters(producer: FlowProducer) -> None:
    node = producer.add_flow(FlowJob(queue="alpha", data="root", children=[
        FlowJob(queue="beta", data="mid", children=[FlowJob(queue="gamma", data=i) for i in range(3)]),
        FlowJob(queue="delta", data="side"),
    ]))
    mid = node.children[0]
    assert len(run_waiting(producer, "gamma")) == 3
    assert producer.registry.get_job("beta", mid.job.id).state.value == "waiting"  # handed across slots
    run_waiting(producer, "delta")
    assert producer.registry.get_job("alpha", node.job.id).state.value == "waiting_children"
    run_waiting(producer, "beta", lambda job: sorted(producer.children_values("beta", job.id).values()))
    assert producer.registry.get_job("alpha", node.job.id).state.value == "waiting"
    assert producer.children_values("alpha", node.job.id) == {
        f"beta:{mid.job.id}": [0, 1, 2], f"delta:{node.children[1].job.id}": "side"}
    for queue in ("beta", "gamma", "delta"):
        assert producer.registry.client.hlen(producer.registry.queue_keys(queue).flowbox) == 0
    flow = producer.get_flow("alpha", node.job.id)
    assert len(flow.walk()) == 6


def test_dag_edges_and_a_batch_on_the_cluster(producer: FlowProducer) -> None:
    first = producer.jobs.enqueue_job("gamma", 1)
    second = producer.jobs.enqueue_job("epsilon", 2)
    run_waiting(producer, "gamma")
    waiter = producer.enqueue_with_dependencies("alpha", "w", None, None, {},
                                                [("gamma", first.id), ("epsilon", second.id, "ignore")])
    assert waiter.state.value == "waiting_children"
    run_waiting(producer, "epsilon")
    assert producer.registry.get_job("alpha", waiter.id).state.value == "waiting"

    with open_batch(producer, "b1", FlowJob(queue="delta", data="done"), None) as batch:
        batch.enqueue_job("beta", "x")
        batch.enqueue_job("epsilon", "y")
    run_waiting(producer, "beta")
    run_waiting(producer, "epsilon")
    status = read_batch(producer, "b1")
    assert (status.total, status.succeeded, status.done) == (2, 2, True)
    callback = producer.registry.get_job("delta", status.on_complete.split(":", 1)[1])
    assert callback.state.value == "waiting"
