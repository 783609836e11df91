"""The async client against the sync one on the same queue, on the real Redis: the same records,
the same validation errors, events, and an event loop that is never blocked."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio
from pydantic import ValidationError

from coordinator import (
    AsyncJobQueueCoordinator,
    Event,
    EventName,
    FlowJob,
    InvalidArgumentError,
    InvalidJobDataError,
    JobNotFoundError,
    JobOptions,
    JobQueueCoordinator,
    JobState,
    QueueNotFoundError,
)
from tests.conftest import FAST_SWEEPS, REDIS_URL

QUEUE = "photos"


@pytest_asyncio.fixture
async def acoord(prefix: str) -> AsyncIterator[AsyncJobQueueCoordinator]:
    async with AsyncJobQueueCoordinator(REDIS_URL, prefix=prefix, **FAST_SWEEPS) as client:
        yield client


class LoopWatch:
    """A heartbeat coroutine ticking every 10 ms, and asyncio's slow-callback warnings: a call that
    blocked the loop (a sync socket read, a sleep) stops the ticks and logs a slow callback."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog
        self.ticks = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LoopWatch:
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = 0.25
        self.caplog.set_level(logging.WARNING, logger="asyncio")
        self._task = asyncio.create_task(self._beat())
        return self

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(0.01)
            self.ticks += 1

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        slow = [r.getMessage() for r in self.caplog.records if r.name == "asyncio" and "took" in r.getMessage()]
        assert not slow, f"the event loop was blocked: {slow}"


def _comparable(job: object) -> dict[str, object]:
    return job.model_dump()  # type: ignore[attr-defined]


@pytest.mark.asyncio
async def test_async_and_sync_clients_write_and_read_the_same_records(coord: JobQueueCoordinator,
                                                                      acoord: AsyncJobQueueCoordinator) -> None:
    info = await acoord.create_queue(QUEUE, default_job_options=JobOptions(priority=3))
    assert info == coord.get_queue(QUEUE)
    from_sync = coord.enqueue_job(QUEUE, {"n": 1}, name="resize", max_retries=2)
    from_async = await acoord.enqueue_job(QUEUE, {"n": 1}, name="resize", max_retries=2)
    assert from_async.state is JobState.WAITING and from_async.options == from_sync.options
    for job_id in (from_sync.id, from_async.id):
        assert _comparable(await acoord.get_job(QUEUE, job_id)) == _comparable(coord.get_job(QUEUE, job_id))
    bulk = await acoord.enqueue_bulk(QUEUE, [{"data": i} for i in range(3)] + [{"data": 9, "options": {"priority": 1}}])
    assert [j.data for j in bulk] == [0, 1, 2, 9] and bulk[-1].options.priority == 1
    delayed = await acoord.schedule_job(QUEUE, "later", {"x": 1}, delay=60_000)
    assert delayed.state is JobState.DELAYED
    assert [_comparable(j) for j in await acoord.get_jobs(QUEUE, ["waiting", "delayed"])] == \
        [_comparable(j) for j in coord.get_jobs(QUEUE, ["waiting", "delayed"])]
    again = await acoord.enqueue_job(QUEUE, {"other": True}, job_id=from_sync.id)
    assert _comparable(again) == _comparable(coord.get_job(QUEUE, from_sync.id))  # existing id: nothing written
    assert (await acoord.get_queue_status(QUEUE)).counts == coord.get_queue_status(QUEUE).counts
    assert coord.get_queue_status(QUEUE).counts.waiting == 6

    assert await acoord.cancel_job(QUEUE, from_sync.id) is True
    assert coord.get_job(QUEUE, from_sync.id).state is JobState.CANCELLED
    assert await acoord.cancel_job(QUEUE, from_sync.id) is False
    assert await acoord.retry_job(QUEUE, from_sync.id) is True
    assert coord.get_job(QUEUE, from_sync.id).state is JobState.WAITING
    with pytest.raises(JobNotFoundError):
        await acoord.cancel_job(QUEUE, "nope")
    assert await acoord.get_job(QUEUE, "nope") is None


@pytest.mark.asyncio
async def test_validation_errors_are_the_sync_clients_and_nothing_is_written(
        coord: JobQueueCoordinator, acoord: AsyncJobQueueCoordinator) -> None:
    coord.create_queue(QUEUE)
    bad_calls = [
        ("enqueue_job", ("missing", {}), {}),
        ("enqueue_job", (QUEUE, {1, 2}), {}),
        ("enqueue_job", (QUEUE, {"n": float("nan")}), {}),
        ("enqueue_job", (QUEUE, {}), {"priority": 0}),
        ("enqueue_job", (QUEUE, {}), {"backoff": {"type": "linear", "delay": 5}}),
        ("enqueue_bulk", (QUEUE, [{"data": 1}, {"data": 2, "options": {"priority": 11}}]), {}),
        ("enqueue_bulk", (QUEUE, [{"data": 1}, {"data": object()}]), {}),
        ("schedule_job", (QUEUE, "x", {}), {"delay": -5}),
        ("get_jobs", (QUEUE, ["sleeping"]), {}),
        ("create_queue", ("bad name!",), {}),
    ]
    for method, args, kwargs in bad_calls:
        with pytest.raises((ValidationError, InvalidJobDataError, QueueNotFoundError, ValueError)) as sync_error:
            getattr(coord, method)(*args, **kwargs)
        with pytest.raises(sync_error.type) as async_error:
            await getattr(acoord, method)(*args, **kwargs)
        assert str(async_error.value) == str(sync_error.value), method
    status = coord.get_queue_status(QUEUE)
    assert status.counts.waiting == status.counts.delayed == 0
    assert coord.get_queue_names() == [QUEUE]


@pytest.mark.asyncio
async def test_wait_for_job_wakes_on_the_event_and_never_blocks_the_loop(
        coord: JobQueueCoordinator, acoord: AsyncJobQueueCoordinator, caplog: pytest.LogCaptureFixture) -> None:
    await acoord.create_queue(QUEUE)
    job = await acoord.enqueue_job(QUEUE, {"n": 1})
    # another process-like actor ends the job 1.5 s from now, through the sync client
    threading.Timer(1.5, coord.cancel_job, (QUEUE, job.id)).start()
    async with LoopWatch(caplog) as watch:
        started = time.monotonic()
        done = await acoord.wait_for_job(QUEUE, job.id, timeout=30)
        waited = time.monotonic() - started
    assert done.state is JobState.CANCELLED and waited >= 1.4
    # a loop blocked for the wait would have ticked a handful of times, a free one every 10 ms
    assert watch.ticks >= 20, f"{watch.ticks} heartbeat ticks in {waited:.1f} s"
    # many calls at once share the client's pool; each returns its own record
    more = await asyncio.gather(*(acoord.enqueue_job(QUEUE, {"i": i}) for i in range(50)))
    read = await asyncio.gather(*(acoord.get_job(QUEUE, j.id) for j in more))
    assert [j.data for j in read] == [{"i": i} for i in range(50)]
    with pytest.raises(TimeoutError):
        await acoord.wait_for_job(QUEUE, more[0].id, timeout=0.3)


@pytest.mark.asyncio
async def test_async_for_over_events_follows_the_queue(coord: JobQueueCoordinator,
                                                       acoord: AsyncJobQueueCoordinator) -> None:
    await acoord.create_queue(QUEUE)
    first = coord.enqueue_job(QUEUE, {"n": 0})
    seen = []

    async def produce() -> None:
        await asyncio.sleep(0.3)
        await acoord.enqueue_job(QUEUE, {"n": 1}, job_id="second")
        await acoord.cancel_job(QUEUE, "second")

    producer = asyncio.create_task(produce())
    async for event in acoord.events(QUEUE, follow=True, idle_timeout_s=2):
        seen.append((event.event, event.job_id))
        if event.event == "cancelled":
            break
    await producer
    assert seen == [("waiting", first.id), ("waiting", "second"), ("cancelled", "second")]
    history = [(e.event, e.job_id) async for e in acoord.events(QUEUE)]
    assert history == seen
    with pytest.raises(QueueNotFoundError):
        async for _ in acoord.events("missing"):
            pass


@pytest.mark.asyncio
async def test_remove_recurring_and_health_match_the_sync_client(coord: JobQueueCoordinator,
                                                                 acoord: AsyncJobQueueCoordinator,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    async with LoopWatch(caplog):
        await acoord.create_queue(QUEUE)
        waiting = await acoord.enqueue_job(QUEUE, {"n": 1})
        assert await acoord.remove_job(QUEUE, waiting.id) is True  # cancelled first, then removed
        assert coord.get_job(QUEUE, waiting.id) is None
        with pytest.raises(JobNotFoundError):
            await acoord.remove_job(QUEUE, waiting.id)

        made = await acoord.schedule_recurring_job(QUEUE, "digest", {"v": 1}, every=60_000, key="digest")
        assert coord.get_recurring_jobs(QUEUE) == [made] == await acoord.get_recurring_jobs(QUEUE)
        with pytest.raises(QueueNotFoundError):
            await acoord.schedule_recurring_job("missing", "digest", {}, every=60_000)
        assert await acoord.remove_recurring_job(QUEUE, "digest") is True
        assert coord.get_recurring_jobs(QUEUE) == []
        assert await acoord.remove_recurring_job(QUEUE, "digest") is False

        health = await acoord.get_health()
        sync_health = coord.get_health()
        assert health.status == sync_health.status
        assert [c.name for c in health.checks] == [c.name for c in sync_health.checks]
        assert f"queue {QUEUE}" in [c.name for c in health.checks]


@pytest.mark.asyncio
async def test_on_calls_sync_and_coroutine_handlers_on_the_loop(coord: JobQueueCoordinator,
                                                                acoord: AsyncJobQueueCoordinator,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    await acoord.create_queue(QUEUE)
    coord.enqueue_job(QUEUE, {"before": True})  # before on(): not delivered
    seen: list[tuple[str, str, str | None]] = []
    loop_thread = threading.get_ident()

    async def on_waiting(event: Event) -> None:
        assert threading.get_ident() == loop_thread
        seen.append(("async", event.event, event.job_id))

    def on_any(event: Event) -> None:
        assert threading.get_ident() == loop_thread
        seen.append(("sync", event.event, event.job_id))

    def broken(event: Event) -> None:
        raise RuntimeError("a broken handler")

    async with LoopWatch(caplog):
        with pytest.raises(InvalidArgumentError):
            await acoord.on("nonsense", on_any)
        with pytest.raises(QueueNotFoundError):
            await acoord.on("waiting", on_any, queue="missing")
        await acoord.on("waiting", broken, queue=QUEUE)
        await acoord.on(EventName.WAITING, on_waiting, queue=QUEUE)
        await acoord.on("*", on_any)  # every queue
        job = coord.enqueue_job(QUEUE, {"n": 1})  # written by the sync client
        await wait_async(lambda: len(seen) >= 2)
        assert sorted(seen) == [("async", "waiting", job.id), ("sync", "waiting", job.id)]
        acoord.off(EventName.WAITING, on_waiting)
        acoord.off("waiting", broken)
        await acoord.cancel_job(QUEUE, job.id)
        await wait_async(lambda: len(seen) >= 3)
        assert seen[2] == ("sync", "cancelled", job.id)
    failures = [r.getMessage() for r in caplog.records if r.getMessage().startswith("event handler")]
    assert len(failures) == 1 and f"{broken!r} failed on waiting" in failures[0]  # the others still ran


async def wait_async(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


@pytest.mark.asyncio
async def test_cancel_and_retry_carry_through_flows_as_the_sync_client(coord: JobQueueCoordinator,
                                                                      acoord: AsyncJobQueueCoordinator,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    """No worker runs here, so no flow sweep either: what moves the parents is the client's own
    follow-up (the hand-off a cancel wrote, the cascade below a parent, the re-arm on retry)."""
    for queue in ("parents", "children"):
        coord.create_queue(queue)
    node = coord.add_flow(FlowJob(queue="parents", children=[FlowJob(queue="children", data=i) for i in range(2)]))
    first, second = (child.job.id for child in node.children)
    async with LoopWatch(caplog):
        assert await acoord.cancel_job("children", first)
        parent = await acoord.get_job("parents", node.job.id)
        assert parent is not None and parent.state is JobState.FAILED  # policy fail: at once
        assert parent.failed_reason is not None and first in parent.failed_reason
        assert await acoord.retry_job("children", first)
        assert coord.get_job("parents", node.job.id).state is JobState.WAITING_CHILDREN  # re-armed
        assert await acoord.cancel_job("parents", node.job.id)
    assert {coord.get_job("children", job_id).state for job_id in (first, second)} == {JobState.CANCELLED}
