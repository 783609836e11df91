"""Celery's canvas of coordinator processors on the flow engine: chain, group, chord, link and
link_error, built the Celery way; jobs run in this process through the worker's claim and finish."""

from __future__ import annotations

import pytest
from celery import chain, chord, group

from coordinator import FlowError, Job, JobQueueCoordinator, JobState, UnrecoverableError
from tests.flow_support import run_all


def add(job: Job) -> int:
    previous = job.children_values()
    if (job.data or {}).get("fail"):
        raise UnrecoverableError("add broke")
    return sum(previous.values()) + int((job.data or {}).get("n", 0))


def handler(job: Job) -> dict:
    return {"failures": job.children_failures()}


@pytest.fixture
def canvas(coord: JobQueueCoordinator) -> JobQueueCoordinator:
    for queue in ("add", "errors"):
        coord.create_queue(queue)
    return coord


def test_a_chain_passes_each_result_to_the_next(canvas: JobQueueCoordinator) -> None:
    coord = canvas
    sig = coord.signature
    run = coord.apply_canvas(chain(sig("add", {"n": 1}), sig("add", {"n": 10}), sig("add", {"n": 100})))
    assert [j.state for j in run.jobs] == [JobState.WAITING, JobState.WAITING_CHILDREN, JobState.WAITING_CHILDREN]
    order = run_all(coord, {"add": add})
    assert order == [f"add:{j.id}" for j in run.jobs]
    assert [coord.get_job("add", j.id).result for j in run.jobs] == [1, 11, 111]
    assert run.tails[0].id == run.jobs[-1].id


def test_a_chord_callback_fires_once_when_the_header_is_done(canvas: JobQueueCoordinator) -> None:
    coord = canvas
    task = coord.app.signature(coord.keys.task_name("add"))  # a signature built from the task name
    header = [task.clone(args=({"n": n},)) for n in range(1, 6)]
    run = coord.apply_canvas(chord(header, coord.signature("add", {"n": 1000})))
    body = run.tails[0]
    assert body.state is JobState.WAITING_CHILDREN and len(run.jobs) == 6
    order = run_all(coord, {"add": add})
    assert order.count(f"add:{body.id}") == 1 and order[-1] == f"add:{body.id}"
    assert coord.get_job("add", body.id).result == 1015
    body_events = [f["event"] for _, f in coord._redis.xrange(coord.keys.for_queue("add").events)
                   if f.get("job_id") == body.id]
    assert body_events.count("active") == 1 and body_events.count("child_completed") == 5


def test_a_group_then_a_fan_out_after_one_job(canvas: JobQueueCoordinator) -> None:
    coord = canvas
    sig = coord.signature
    run = coord.apply_canvas(chain(sig("add", {"n": 1}), group(sig("add", {"n": 2}), sig("add", {"n": 3}))))
    assert len(run.tails) == 2
    run_all(coord, {"add": add})
    assert sorted(coord.get_job("add", j.id).result for j in run.tails) == [3, 4]
    plain = coord.apply_canvas(group(sig("add", {"n": 5}), sig("add", {"n": 6})))
    assert [j.state for j in plain.jobs] == [JobState.WAITING, JobState.WAITING]


def test_link_and_link_error(canvas: JobQueueCoordinator) -> None:
    coord = canvas
    sig = coord.signature
    ok = sig("add", {"n": 1}, link=sig("add", {"n": 2}), link_error=sig("errors", None))
    bad = sig("add", {"fail": True}, link=sig("add", {"n": 3}), link_error=sig("errors", None))
    first = coord.apply_canvas(ok)
    second = coord.apply_canvas(bad)
    run_all(coord, {"add": add, "errors": handler})
    _, ok_link, ok_error = first.jobs
    _, bad_link, bad_error = second.jobs
    assert coord.get_job("add", ok_link.id).result == 3
    assert coord.get_job("errors", ok_error.id).state is JobState.CANCELLED
    assert coord.get_job("add", bad_link.id).state is JobState.CANCELLED
    handled = coord.get_job("errors", bad_error.id)
    assert handled.state is JobState.COMPLETED
    assert handled.result == {"failures": {f"add:{second.jobs[0].id}": "UnrecoverableError: add broke"}}


def test_canvas_refuses_what_it_cannot_run(canvas: JobQueueCoordinator) -> None:
    coord = canvas
    with pytest.raises(FlowError, match="neither a coordinator processor"):
        coord.apply_canvas(coord.app.signature("someapp.tasks.add", args=(1,)))
    with pytest.raises(FlowError, match="2 arguments"):
        coord.apply_canvas(coord.app.signature(coord.keys.task_name("add"), args=(1, 2)))
