"""The Celery message that the registry's Lua `dispatch` writes is one the installed kombu and Celery read.

The message is built in Lua (registry/lua/_lib.lua) for speed, not by kombu, so these tests pin it
to the installed libraries: decoded by kombu's Redis-transport Message, parsed by Celery's worker
Request (protocol 2), compared key by key with a message `send_task` really writes, and run by a
real worker. A kombu or Celery upgrade that changes the format fails here, not in production.
"""

from __future__ import annotations

import json

import pytest
import redis
from celery.worker.request import Request

from coordinator import JobQueueCoordinator
from tests import processors

QUEUE = "fmt"


def _only_message(client: redis.Redis, coord: JobQueueCoordinator, queue: str) -> tuple[int, dict]:
    """The one message in the queue's broker lists, with its kombu priority level."""
    qk = coord._registry.queue_keys(queue)
    found = [(level, item) for level in range(10) for item in client.lrange(qk.broker_list(level), 0, -1)]
    assert len(found) == 1, found
    level, raw = found[0]
    return level, json.loads(raw)


def _kombu_message(coord: JobQueueCoordinator, payload: dict):
    """Decode the payload as kombu's Redis transport does when it pops it from the list."""
    with coord.app.connection_for_read() as conn:
        channel = conn.default_channel
        return channel.Message(payload, channel=channel)


@pytest.fixture
def fmt_coord(coord: JobQueueCoordinator) -> JobQueueCoordinator:
    coord.create_queue(QUEUE)
    coord.processor(QUEUE)(processors.echo)
    return coord


def test_kombu_and_celery_parse_the_dispatched_message(fmt_coord: JobQueueCoordinator,
                                                       redis_client: redis.Redis) -> None:
    job = fmt_coord.enqueue_job(QUEUE, {"n": 1}, priority=3)
    level, payload = _only_message(redis_client, fmt_coord, QUEUE)
    assert level == 2  # priority 3 -> kombu level 2 (0 is the highest)

    message = _kombu_message(fmt_coord, payload)
    task_id = f"{job.id}.1"
    celery_queue = fmt_coord.celery_queue(QUEUE)
    assert message.content_type == "application/json"
    assert message.headers["task"] == fmt_coord.keys.task_name(QUEUE)
    assert message.headers["id"] == task_id
    assert message.delivery_info["routing_key"] == celery_queue
    assert message.properties["priority"] == 2
    assert message.delivery_tag
    assert message.decode() == [[], {"queue": QUEUE, "job_id": job.id, "token": 1}, {}]

    task = fmt_coord.app.tasks[fmt_coord.keys.task_name(QUEUE)]
    request = Request(message, app=fmt_coord.app, task=task)
    assert request.id == task_id
    assert request.name == job.name == "echo"  # Celery's shadow name: events and Flower list the job's name
    assert message.headers["argsrepr"] == '{"n":1}'  # the job's data, as events and Flower show arguments
    assert request.args == [] and request.kwargs == {"queue": QUEUE, "job_id": job.id, "token": 1}
    assert request.time_limits == (None, None)
    assert request.delivery_info["routing_key"] == celery_queue
    assert request.delivery_info["priority"] == 2
    assert request.root_id == task_id and request.parent_id is None
    assert request.eta is None and request.expires is None
    assert request.ignore_result is True


def test_timeout_and_trace_id_reach_celery(fmt_coord: JobQueueCoordinator, redis_client: redis.Redis) -> None:
    job = fmt_coord.enqueue_job(QUEUE, None, timeout=2.5, trace_id="trace-1", priority=10)
    level, payload = _only_message(redis_client, fmt_coord, QUEUE)
    assert level == 9
    message = _kombu_message(fmt_coord, payload)
    request = Request(message, app=fmt_coord.app, task=fmt_coord.app.tasks[fmt_coord.keys.task_name(QUEUE)])
    assert request.time_limits == [4.5, 2.5]  # hard = soft + 2
    assert message.headers["trace_id"] == "trace-1"
    assert request.name == job.name  # the shadow name travels with a timeout too
    assert request.id == f"{job.id}.1"


def test_long_data_is_cut_in_argsrepr_on_a_character_boundary(fmt_coord: JobQueueCoordinator,
                                                             redis_client: redis.Redis) -> None:
    fmt_coord.enqueue_job(QUEUE, "é" * 2000, name='a "quoted" name')
    _, payload = _only_message(redis_client, fmt_coord, QUEUE)
    message = _kombu_message(fmt_coord, payload)
    assert message.headers["shadow"] == 'a "quoted" name'
    shown = message.headers["argsrepr"]
    assert shown.startswith('"éé') and shown.endswith("...") and len(shown.encode()) <= 256 + 3


def test_message_keys_are_those_send_task_writes(fmt_coord: JobQueueCoordinator, redis_client: redis.Redis,
                                                 prefix: str) -> None:
    """Every key of ours is one Celery itself writes (bar our trace headers), and the keys kombu
    and Celery's Request read without a default are all there."""
    fmt_coord.enqueue_job(QUEUE, None, timeout=1)
    _, ours = _only_message(redis_client, fmt_coord, QUEUE)

    probe = fmt_coord.celery_queue("probe")  # a Celery queue nobody consumes
    fmt_coord.app.send_task("probe.task", kwargs={"a": 1}, queue=probe, priority=4)
    try:
        celery_level, theirs = _only_message(redis_client, fmt_coord, "probe")
    finally:
        bindings = redis_client.keys(f"_kombu.binding.*{prefix}*")
        if bindings:
            redis_client.delete(*bindings)
    assert celery_level == 4 and theirs["properties"]["priority"] == 4

    assert set(ours) <= set(theirs)
    assert set(ours["headers"]) - {"trace_id", "traceparent"} <= set(theirs["headers"])
    assert set(ours["properties"]) <= set(theirs["properties"])
    assert set(ours["properties"]["delivery_info"]) == set(theirs["properties"]["delivery_info"])
    assert {"body", "content-type", "content-encoding", "headers", "properties"} <= set(ours)
    assert {"lang", "task", "id", "root_id", "retries", "timelimit", "ignore_result"} <= set(ours["headers"])
    assert {"delivery_tag", "delivery_info", "priority"} <= set(ours["properties"])
    assert ours["content-type"] == theirs["content-type"]
    assert ours["headers"]["lang"] == theirs["headers"]["lang"]
    assert type(ours["headers"]["retries"]) is type(theirs["headers"]["retries"])
    assert len(ours["headers"]["timelimit"]) == len(theirs["headers"]["timelimit"])
    # the body is protocol 2: [args, kwargs, embed]
    body = json.loads(ours["body"])
    assert isinstance(body, list) and len(body) == 3 and body[0] == [] and isinstance(body[2], dict)


def test_a_real_worker_runs_dispatched_messages(fmt_coord: JobQueueCoordinator) -> None:
    plain = fmt_coord.enqueue_job(QUEUE, {"n": 1})
    limited = fmt_coord.enqueue_job(QUEUE, {"n": 2}, timeout=30, trace_id="t-2", priority=1)
    bulk = fmt_coord.enqueue_bulk(QUEUE, [{"data": {"n": i}} for i in range(3, 6)])
    fmt_coord.register_worker(QUEUE, pool="solo")
    for job in [plain, limited, *bulk]:
        done = fmt_coord.wait_for_job(QUEUE, job.id, timeout=30)
        assert done.state.value == "completed", done.failed_reason
        assert done.result["echo"] == job.data


def test_redispatch_after_a_retry_runs(coord: JobQueueCoordinator) -> None:
    """A retried job is dispatched again by promote.lua (token 2) with the same message builder."""
    coord.create_queue("fmt-retry")
    job = coord.enqueue_job("fmt-retry", {"failures": 1}, backoff={"type": "fixed", "delay": 10}, timeout=30)
    coord.register_worker("fmt-retry", processor=processors.flaky, pool="solo")
    done = coord.wait_for_job("fmt-retry", job.id, timeout=30)
    assert done.state.value == "completed", done.failed_reason
    assert done.attempts_made == 2 and done.result == "recovered"


def test_names_that_need_json_escaping_still_make_valid_messages(fmt_coord: JobQueueCoordinator,
                                                                 redis_client: redis.Redis) -> None:
    """The API only lets plain names through, but the script must not write broken JSON (a worker
    dies on a message it cannot parse), so its escaping path is checked with a registry call."""
    from coordinator.models import JobOptions
    from coordinator.registry import NewJob

    odd_id = 'odd"id\\with\tescapes'
    options = JobOptions(max_retries=0, trace_id=None)
    assert fmt_coord._registry.enqueue(QUEUE, [NewJob(id=odd_id, name="n", data_json="1", options=options)]) == [True]
    _, payload = _only_message(redis_client, fmt_coord, QUEUE)  # json.loads succeeded
    message = _kombu_message(fmt_coord, payload)
    assert message.headers["id"] == f"{odd_id}.1"
    assert message.decode()[1] == {"queue": QUEUE, "job_id": odd_id, "token": 1}
