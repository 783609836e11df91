"""Error paths: workers that cannot start, a queue's second processor, unknown worker ids, invalid
worker options, an unreachable broker, the result and log caps."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from coordinator import (
    InvalidArgumentError,
    JobQueueCoordinator,
    JobState,
    WorkerNotFoundError,
    WorkerStartError,
)
from coordinator.testing import run_jobs
from coordinator.validation import MAX_LOG_LINES
from tests import broken_worker_app, processors
from tests.support.env import REDIS_URL
from tests.support.processes import worker_processes
from tests.support.servers import free_port


def test_a_worker_that_exits_before_consuming_raises_worker_start_error(coord: JobQueueCoordinator,
                                                                         prefix: str) -> None:
    coord.create_queue("q")
    with pytest.raises(WorkerStartError, match="did not start consuming") as info:
        coord.register_worker("q", broken_worker_app.never, pool="solo")
    assert "exit code 1" in str(info.value)
    assert "refuses to load in a worker" in str(info.value)  # the log tail says why
    assert coord.get_workers_by_queue("q") == [] and coord.get_all_worker_status() == []
    assert worker_processes(prefix) == []


def test_a_queue_has_one_processor(coord: JobQueueCoordinator) -> None:
    def first(job: object) -> None: ...

    def second(job: object) -> None: ...

    coord.processor("q")(first)
    assert coord.processor("q")(first) is first  # the same one again is fine
    with pytest.raises(InvalidArgumentError, match="processor: queue 'q' already has processor first"):
        coord.processor("q")(second)
    assert coord.processors["q"] is first


def test_unknown_worker_ids_raise_worker_not_found(coord: JobQueueCoordinator) -> None:
    for call in (coord.get_worker, coord.pause_worker, coord.resume_worker, coord.close_worker):
        with pytest.raises(WorkerNotFoundError, match="no-such-worker"):
            call("no-such-worker")


@pytest.mark.parametrize(("fields", "field"), [
    ({"concurrency": 0}, "concurrency"),
    ({"concurrency": 513}, "concurrency"),
    ({"autoscale": (1, 3)}, "autoscale"),
    ({"autoscale": (0, 0)}, "autoscale"),
    ({"pool": "gevent"}, "pool"),
    ({"max_restarts": -1}, "max_restarts"),
    ({"no_such_option": 1}, "no_such_option"),
])
def test_invalid_worker_options_name_the_field_and_start_nothing(coord: JobQueueCoordinator, prefix: str,
                                                                 fields: dict, field: str) -> None:
    coord.create_queue("q")
    with pytest.raises(ValidationError, match=field):
        coord.register_worker("q", processors.echo, **fields)
    assert coord.get_workers_by_queue("q") == []
    assert worker_processes(prefix) == []


def test_an_unreachable_broker_keeps_the_job_and_its_message(prefix: str, caplog: pytest.LogCaptureFixture) -> None:
    """RabbitMQ away: the enqueue returns the recorded job (raising would invite a second enqueue);
    its message stays claimed in the outbox, to be published again; the log names the broker."""
    broker = f"amqp://guest:secret-pw@127.0.0.1:{free_port()}//"
    coord = JobQueueCoordinator(REDIS_URL, broker_url=broker, prefix=prefix)
    try:
        coord.create_queue("q")
        with caplog.at_level("WARNING", logger="coordinator.broker.outbox"):
            job = coord.enqueue_job("q", {"n": 1})
        assert coord.get_job("q", job.id).state is JobState.WAITING
        keys = coord.keys.for_queue("q")
        assert coord._redis.llen(keys.outbox) + coord._redis.zcard(keys.relaying) == 1
        [warning] = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
        assert f"127.0.0.1:{broker.rsplit(':', 1)[1][:-2]}" in warning and "secret-pw" not in warning
    finally:
        coord.shutdown(timeout=5)


def test_a_result_over_10_mib_fails_the_attempt(coord: JobQueueCoordinator) -> None:
    coord.create_queue("q")
    job = coord.enqueue_job("q", {}, max_retries=0)
    [done] = run_jobs(coord, "q", processor=processors.huge_result)
    assert done.id == job.id and done.state is JobState.FAILED
    assert done.failed_reason.startswith("InvalidJobDataError: result"), done.failed_reason
    assert done.result is None


def test_a_jobs_log_keeps_its_last_lines(coord: JobQueueCoordinator) -> None:
    coord.create_queue("q")
    coord.enqueue_job("q", {"lines": MAX_LOG_LINES + 5})
    [done] = run_jobs(coord, "q", processor=processors.chatty)
    assert done.state is JobState.COMPLETED
    assert len(done.logs) == MAX_LOG_LINES
    assert done.logs[0] == "line 5" and done.logs[-1] == f"line {MAX_LOG_LINES + 4}"
