"""JobScheduler without workers: every write lands in exactly one state index, bad input writes nothing."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from coordinator import (
    BulkJob,
    InvalidJobDataError,
    JobNotFoundError,
    JobOptions,
    JobQueueCoordinator,
    JobState,
    WaitTimeoutError,
)


@pytest.fixture
def queue(coord: JobQueueCoordinator) -> str:
    coord.create_queue("photos")
    return "photos"


def broker_messages(redis_client, coord: JobQueueCoordinator, queue: str) -> dict[int, int]:
    keys = coord.keys.for_queue(queue)
    return {level: redis_client.llen(keys.broker_list(level)) for level in range(10)}


def states_of(redis_client, coord: JobQueueCoordinator, queue: str, job_id: str) -> list[str]:
    """Every state index that holds the job (must be exactly one)."""
    keys = coord.keys.for_queue(queue)
    return [s for s in ("waiting", "active", "delayed", "completed", "failed", "cancelled")
            if redis_client.zscore(keys.index(s), job_id) is not None]


def test_enqueue_writes_record_index_and_message(coord, queue, redis_client) -> None:
    job = coord.enqueue_job(queue, {"photo": 1}, priority=1, name="resize", trace_id="trace-1")
    assert job.state is JobState.WAITING and job.name == "resize"
    stored = coord.get_job(queue, job.id)
    assert stored is not None
    assert stored.data == {"photo": 1} and stored.options.priority == 1 and stored.trace_id == "trace-1"
    assert stored.created_at.tzinfo is not None
    assert states_of(redis_client, coord, queue, job.id) == ["waiting"]
    assert broker_messages(redis_client, coord, queue)[0] == 1  # priority 1 -> kombu level 0


def test_job_id_makes_enqueue_idempotent(coord, queue, redis_client) -> None:
    first = coord.enqueue_job(queue, {"v": 1}, job_id="photo-42")
    second = coord.enqueue_job(queue, {"v": 2}, job_id="photo-42")
    assert second.id == first.id and second.data == {"v": 1}
    assert coord.get_queue_status(queue).counts.waiting == 1
    assert sum(broker_messages(redis_client, coord, queue).values()) == 1


def test_bad_input_is_refused_before_anything_is_written(coord, queue, redis_client, prefix) -> None:
    before = sorted(redis_client.scan_iter(match=f"{prefix}:*"))
    with pytest.raises(InvalidJobDataError, match="data"):
        coord.enqueue_job(queue, {"when": datetime.now()})
    with pytest.raises(InvalidJobDataError, match="data"):
        coord.enqueue_job(queue, {"x": float("nan")})
    with pytest.raises(InvalidJobDataError, match="over the limit"):
        coord.enqueue_job(queue, "x" * (10 * 1024 * 1024 + 1))
    with pytest.raises(ValidationError, match="priority"):
        coord.enqueue_job(queue, {}, priority=11)
    with pytest.raises(ValidationError, match="max_retries"):
        coord.enqueue_job(queue, {}, max_retries=-1)
    with pytest.raises(ValidationError, match="job_id"):
        coord.enqueue_job(queue, {}, job_id="../other")
    with pytest.raises(ValidationError, match="prioritty"):
        coord.enqueue_job(queue, {}, prioritty=1)
    with pytest.raises(InvalidJobDataError, match="data"):  # one bad job: the whole bulk is refused
        coord.enqueue_bulk(queue, [{"data": 1}, {"data": {1, 2}}])
    assert sorted(redis_client.scan_iter(match=f"{prefix}:*")) == before
    assert coord.get_queue_status(queue).counts.waiting == 0


def test_max_job_size_is_configurable(prefix) -> None:
    from tests.support.env import REDIS_URL

    small = JobQueueCoordinator(REDIS_URL, prefix=prefix, max_job_size=100)
    small.create_queue("q")
    small.enqueue_job("q", "x" * 90)
    with pytest.raises(InvalidJobDataError, match="100"):
        small.enqueue_job("q", "x" * 120)
    small.shutdown()


def test_enqueue_bulk_keeps_order_and_options(coord, queue) -> None:
    jobs = coord.enqueue_bulk(queue, [
        {"data": i, "name": f"n{i}", "options": {"priority": 1 + i % 10}} for i in range(1200)
    ] + [BulkJob(data="last", options=JobOptions(delay=60_000))])
    assert [j.data for j in jobs[:-1]] == list(range(1200))
    assert jobs[-1].state is JobState.DELAYED
    counts = coord.get_queue_status(queue).counts
    assert (counts.waiting, counts.delayed) == (1200, 1)
    assert coord.get_job(queue, jobs[7].id).options.priority == 8


def test_schedule_job_by_delay_and_run_at(coord, queue, redis_client) -> None:
    by_delay = coord.schedule_job(queue, "later", {"a": 1}, delay=60_000)
    run_at = datetime.now(timezone.utc) + timedelta(minutes=5)
    by_time = coord.schedule_job(queue, "at", {"a": 2}, run_at=run_at)
    keys = coord.keys.for_queue(queue)
    assert states_of(redis_client, coord, queue, by_delay.id) == ["delayed"]
    due = redis_client.zscore(keys.index("delayed"), by_time.id)
    assert abs(due / 1000 - run_at.timestamp()) < 1
    assert sum(broker_messages(redis_client, coord, queue).values()) == 0  # held outside the broker
    with pytest.raises(ValidationError, match="run_at"):
        coord.schedule_job(queue, "both", {}, delay=5, run_at=run_at)
    with pytest.raises(ValidationError, match="run_at"):
        coord.schedule_job(queue, "naive", {}, run_at=datetime.now())


def test_get_jobs_orders_and_slices(coord, queue) -> None:
    ids = [coord.enqueue_job(queue, i).id for i in range(5)]
    delayed = coord.schedule_job(queue, "d", 99, delay=60_000)
    newest_first = coord.get_jobs(queue, ["waiting"])
    assert [j.id for j in newest_first] == ids[::-1]
    assert [j.id for j in coord.get_jobs(queue, "waiting", 0, 1, asc=True)] == ids[:2]
    both = coord.get_jobs(queue, [JobState.WAITING, JobState.DELAYED])
    assert {j.id for j in both} == {*ids, delayed.id}
    assert coord.get_failed_jobs(queue) == []
    assert coord.get_job(queue, "missing") is None


def test_cancel_waiting_and_delayed(coord, queue, redis_client) -> None:
    waiting = coord.enqueue_job(queue, 1)
    delayed = coord.schedule_job(queue, "d", 2, delay=60_000)
    assert coord.cancel_job(queue, waiting.id)
    assert coord.cancel_job(queue, delayed.id)
    assert not coord.cancel_job(queue, waiting.id)  # already cancelled
    for job_id in (waiting.id, delayed.id):
        assert states_of(redis_client, coord, queue, job_id) == ["cancelled"]
    with pytest.raises(JobNotFoundError):
        coord.cancel_job(queue, "missing")


def test_promote_and_priority_rules(coord, queue, redis_client) -> None:
    delayed = coord.schedule_job(queue, "d", 1, delay=60_000)
    assert coord.update_job_priority(queue, delayed.id, 2)
    assert coord.promote_job(queue, delayed.id)
    assert states_of(redis_client, coord, queue, delayed.id) == ["waiting"]
    assert broker_messages(redis_client, coord, queue)[1] == 1  # priority 2 -> level 1
    assert not coord.promote_job(queue, delayed.id)  # not delayed any more

    assert coord.update_job_priority(queue, delayed.id, 9)  # waiting: a new dispatch at level 8
    assert broker_messages(redis_client, coord, queue)[8] == 1
    assert coord.get_job(queue, delayed.id).options.priority == 9
    with pytest.raises(ValidationError, match="priority"):
        coord.update_job_priority(queue, delayed.id, 0)
    with pytest.raises(JobNotFoundError):
        coord.update_job_priority(queue, "missing", 3)
    with pytest.raises(JobNotFoundError):
        coord.promote_job(queue, "missing")


def test_retry_only_from_failed_or_cancelled(coord, queue) -> None:
    job = coord.enqueue_job(queue, 1)
    assert not coord.retry_job(queue, job.id)  # waiting: not allowed
    coord.cancel_job(queue, job.id)
    assert coord.retry_job(queue, job.id)
    assert coord.get_job(queue, job.id).state is JobState.WAITING
    with pytest.raises(JobNotFoundError):
        coord.retry_job(queue, "missing")


def test_wait_for_job_times_out(coord, queue) -> None:
    job = coord.enqueue_job(queue, 1)
    with pytest.raises(TimeoutError, match=job.id) as info:
        coord.wait_for_job(queue, job.id, timeout=0.3)
    assert isinstance(info.value, WaitTimeoutError)  # in the error tree, and still a TimeoutError
    with pytest.raises(JobNotFoundError):
        coord.wait_for_job(queue, "missing", timeout=0.3)


def test_wait_for_job_blocks_shorter_than_the_socket_timeout(prefix) -> None:
    """Found while testing the soak's findings: with socket_timeout_s=1 each XREAD BLOCK of 1 s
    raced the socket's own timeout and wait_for_job raised RedisUnavailableError."""
    from tests.support.env import REDIS_URL

    with JobQueueCoordinator(REDIS_URL, prefix=prefix, socket_timeout_s=1) as short:
        short.create_queue("q")
        job = short.enqueue_job("q", 1)
        with pytest.raises(WaitTimeoutError):
            short.wait_for_job("q", job.id, timeout=4)


def test_queue_defaults_apply_and_explicit_options_win(coord) -> None:
    coord.create_queue("q", default_job_options=JobOptions(priority=3, max_retries=7))
    job = coord.enqueue_job("q", 1)
    assert (job.options.priority, job.options.max_retries) == (3, 7)
    job = coord.enqueue_job("q", 1, JobOptions(priority=9), max_retries=1)
    assert (job.options.priority, job.options.max_retries) == (9, 1)
    plain = coord.create_queue("r") and coord.enqueue_job("r", 1)
    assert plain.options.max_retries == coord.settings.default_max_retries == 3
