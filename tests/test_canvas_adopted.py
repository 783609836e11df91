"""Celery's canvas of an adopted app's own tasks on the flow engine (`coord.apply_canvas`): a
chord's body gets the header's results as a list, a chain step the previous result, as Celery
passes them; real `celery worker` processes run the jobs."""

from __future__ import annotations

from celery import chain, chord

from coordinator import JobQueueCoordinator, JobState
from tests import adopted_app
from tests.support.adopted import ADOPTED_QUEUE
from tests.support.waiting import WAIT_S

Q = ADOPTED_QUEUE


def test_a_chord_of_adopted_tasks_fires_its_body_once(adopted: JobQueueCoordinator) -> None:
    run = adopted.apply_canvas(chord([adopted_app.add.s(1, 2), adopted_app.add.s(3, 4), adopted_app.add.s(5, 6)],
                                     adopted_app.total.s(bonus=100)))
    body = run.tails[0]
    assert body.name == "legacy.total" and body.state is JobState.WAITING_CHILDREN
    assert [job.name for job in run.jobs[:3]] == ["legacy.add"] * 3
    adopted.register_worker(Q)
    done = adopted.wait_for_job(Q, body.id, timeout=WAIT_S)
    assert done.state is JobState.COMPLETED and done.result == 3 + 7 + 11 + 100
    events = [f for _, f in adopted._redis.xrange(adopted.keys.for_queue(Q).events) if f.get("job_id") == body.id]
    assert [f["event"] for f in events].count("active") == 1


def test_a_chain_of_adopted_tasks_passes_each_result(adopted: JobQueueCoordinator) -> None:
    run = adopted.apply_canvas(chain(adopted_app.add.s(1, 2), adopted_app.add.s(10), adopted_app.add.s(100)))
    adopted.register_worker(Q)
    last = adopted.wait_for_job(Q, run.tails[0].id, timeout=WAIT_S)
    assert last.state is JobState.COMPLETED and last.result == 113
