"""The contracts between the Lua scripts and Python, each named once: event names, the dispatch's
task id and delivery tag, the scripts' reply codes."""

from __future__ import annotations

import json
import re
from importlib import resources

import pytest

from coordinator import EventName, JobQueueCoordinator
from coordinator.dispatch import Dispatch, delivery_tag, parse_delivery_tag, parse_task_id, task_id
from coordinator.registry.replies import SCRIPT_REPLIES, START_STATUSES, Reply, interpret_reply
from coordinator.errors import JobNotFoundError, QueueNotFoundError

LUA = resources.files("coordinator.registry") / "lua"


def lua_sources() -> dict[str, str]:
    return {path.name.removesuffix(".lua"): path.read_text() for path in LUA.iterdir() if path.name.endswith(".lua")}


def test_every_event_a_script_emits_is_an_event_name() -> None:
    emitted = set()
    for source in lua_sources().values():
        emitted |= set(re.findall(r'\bemit(?:Job)?\([^,]+,\s*[^,]+,\s*"(\w+)"', source))
        emitted |= set(re.findall(r'emitJob\(q\.events, q\.maxLen, "(\w+)"', source))
    assert {"waiting", "active", "completed", "failed", "stalled", "cancelled", "progress"} <= emitted
    assert emitted <= {name.value for name in EventName}


def test_every_script_that_replies_missing_has_its_error_in_the_table() -> None:
    missing = {name for name, source in lua_sources().items() if re.search(r"return -1\b", source)}
    assert missing and all(SCRIPT_REPLIES.get(name) is not None for name in missing), missing
    with pytest.raises(JobNotFoundError):
        interpret_reply("cancel", Reply.MISSING, "q", "j")
    with pytest.raises(QueueNotFoundError):
        interpret_reply("enqueue", Reply.MISSING, "q")
    assert interpret_reply("retry", Reply.DONE, "q", "j") and not interpret_reply("retry", Reply.REFUSED, "q", "j")
    assert set(re.findall(r'return \{"(\w+)"', lua_sources()["start"])) == set(START_STATUSES)


@pytest.mark.parametrize("job_id", ["plain", "with.dots.in.it", "rep:key:1780000000000"])
def test_task_id_and_delivery_tag_round_trip(job_id: str) -> None:
    assert parse_task_id(task_id(job_id, 7)) == Dispatch(job_id, 7)
    assert parse_delivery_tag(delivery_tag("p:{q}", job_id, 7), "p:{q}") == Dispatch(job_id, 7)
    assert parse_delivery_tag(delivery_tag("p:{other}", job_id, 7), "p:{q}") is None
    assert parse_task_id("no-token") is None


def test_the_message_a_script_writes_carries_the_ids_python_builds(coord: JobQueueCoordinator) -> None:
    coord.create_queue("ids")
    job = coord.enqueue_job("ids", {"n": 1}, job_id="a.b")
    celery_queue = coord.celery_queue("ids")
    (raw,) = coord._redis.lrange(coord.keys.for_queue("ids").broker_list(4), 0, -1)  # priority 5: level 4
    message = json.loads(raw)
    assert message["headers"]["id"] == task_id(job.id, 1)
    assert message["properties"]["delivery_tag"] == delivery_tag(celery_queue, job.id, 1)
    assert parse_delivery_tag(message["properties"]["delivery_tag"], celery_queue) == Dispatch("a.b", 1)
