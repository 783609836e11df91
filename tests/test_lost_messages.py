"""A message a consumer popped from a broker list and never recorded as unacked (its BRPOP
answered, the worker SIGKILLed before kombu wrote the unacked hash) is in no list and in no
unacked hash: `Registry.recover_lost` (run by the supervisor once a worker died) dispatches
its job again. The pops here are the Redis commands the dead consumer ran."""

from __future__ import annotations

import json

from coordinator import JobQueueCoordinator, JobState
from coordinator.dispatch import parse_task_id


def test_a_message_popped_by_a_dead_consumer_is_dispatched_again(coord: JobQueueCoordinator) -> None:
    coord.create_queue("lost")
    jobs = [coord.enqueue_job("lost", {"n": i}) for i in range(3)]
    registry = coord._registry
    client = registry.client
    qk = registry.queue_keys("lost")
    [key] = [k for k in qk.broker_lists if client.llen(k)]
    in_flight = json.loads(client.rpop(key))  # answered to the consumer that was then killed
    held = client.rpop(key)  # a live worker's: recorded as unacked, as kombu does after the pop
    client.hset(coord.keys.unacked, json.loads(held)["properties"]["delivery_tag"], held)
    lost = parse_task_id(in_flight["headers"]["id"])
    assert lost is not None and (lost.job_id, lost.token) == (jobs[0].id, 1)

    assert registry.recover_lost("lost") == [jobs[0].id]
    assert coord.get_job("lost", jobs[0].id).state is JobState.WAITING
    assert client.hget(qk.job(jobs[0].id), "token") == "2"
    assert client.llen(key) == 2  # the new dispatch and the untouched third job
    assert all(client.hget(qk.job(job.id), "token") == "1" for job in jobs[1:])
    assert registry.recover_lost("lost") == []  # every waiting job has its message now
