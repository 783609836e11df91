"""The RabbitMQ outbox: a message written by the registry but never published (its producer died
between the two) is published by the workers' sweep; a relay that died after claiming is undone."""

from __future__ import annotations

from coordinator import JobQueueCoordinator, JobState
from coordinator.broker.outbox import OutboxRelay
from tests import processors
from tests.support.env import (
    AMQP_URL,
    FAST_SWEEPS,
    REDIS_URL,
    delete_amqp_queues,
    require_rabbitmq,
)
from tests.support.waiting import WAIT_S, wait_until


def test_unpublished_and_half_relayed_messages_reach_the_worker(prefix: str) -> None:
    require_rabbitmq()
    coord = JobQueueCoordinator(REDIS_URL, broker_url=AMQP_URL, prefix=prefix, **FAST_SWEEPS)
    try:
        coord.create_queue("q")
        relay = coord._registry.after_dispatch
        coord._registry.after_dispatch = None  # this producer "dies" before publishing
        stranded = coord.enqueue_job("q", {"n": 1})
        claimed = coord.enqueue_job("q", {"n": 2})
        outbox = coord.keys.for_queue("q").outbox
        assert coord._redis.llen(outbox) == 2
        # a relay claims one message and dies before it is confirmed: it is put back after the stale time
        assert len(coord._registry.claim_outbox("q", 1, stale_ms=60_000)) == 1
        assert coord._registry.claim_outbox("q", 10, stale_ms=0) != []  # stale at once: back, then claimed again
        coord._registry.release_outbox("q", [])  # nothing confirmed
        coord._redis.zadd(coord.keys.for_queue("q").relaying,
                         {m: 0 for m in coord._redis.zrange(coord.keys.for_queue("q").relaying, 0, -1)})
        coord._registry.after_dispatch = relay

        coord.register_worker("q", processors.echo, pool="solo")  # its sweep publishes the outbox
        for job in (stranded, claimed):
            assert coord.wait_for_job("q", job.id, timeout=WAIT_S).state is JobState.COMPLETED
        # the relay releases its claim after publishing, so a job may finish before that release
        relaying = coord.keys.for_queue("q").relaying
        wait_until(lambda: coord._redis.llen(outbox) == 0 and coord._redis.zcard(relaying) == 0, WAIT_S,
                   "the outbox drained and its claims released")
        assert isinstance(coord._registry.after_dispatch.__self__, OutboxRelay)
    finally:
        queues = coord.get_queue_names()
        coord.shutdown(timeout=10)
        delete_amqp_queues(coord, queues)
