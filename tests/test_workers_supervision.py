"""Supervision: a managed worker that dies is restarted under its id, visibly, within a limit."""

from __future__ import annotations

import os
import signal

import psutil
from worker_processors import recorded

from coordinator import Event, EventName, JobQueueCoordinator, JobState, WorkerAction, WorkerState
from tests.support.pools import events, kill_worker_group, process_running, wait_until


def test_killed_worker_is_restarted_with_a_new_pid(coord: JobQueueCoordinator) -> None:
    coord.create_queue("super")
    worker = coord.register_worker("super", recorded, pool="prefork", concurrency=1)
    heard: list[Event] = []
    coord.on(EventName.WORKER, heard.append, queue="super")  # worker events reach on() as documented
    kill_worker_group(worker.pid)

    crashed = wait_until(lambda: (s := coord.get_worker(worker.id)).state is WorkerState.CRASHED and s,
                         10, "state crashed")
    assert crashed.pid is None
    restarted = wait_until(
        lambda: (s := coord.get_worker(worker.id)).state is WorkerState.RUNNING and s.restarts == 1 and s,
        30, "the restart")
    assert restarted.id == worker.id and restarted.node_name == worker.node_name
    assert restarted.pid != worker.pid and process_running(restarted.pid)
    assert not process_running(worker.pid)

    # the supervisor marks the worker running, then appends its `restarted` event
    actions = wait_until(lambda: len(found := [(e["action"], e["worker"]) for e in events(coord, "super", "worker")])
                         >= 2 and found, 10, "the restarted event")
    assert actions == [("crashed", worker.id), ("restarted", worker.id)]
    crash = events(coord, "super", "worker")[0]
    assert crash["pid"] == str(worker.pid) and crash["exit_code"] == "-9"
    wait_until(lambda: len(heard) >= 2, 10, "both worker events delivered to on()")
    assert [(e.event, e.data["action"], e.data["worker"]) for e in heard] == [
        ("worker", WorkerAction.CRASHED, worker.id), ("worker", WorkerAction.RESTARTED, worker.id)]

    job = coord.enqueue_job("super", {"seconds": 0.01})
    assert coord.wait_for_job("super", job.id, 30).worker_id == worker.node_name


def test_supervisor_gives_up_after_the_restart_limit(coord: JobQueueCoordinator) -> None:
    coord.create_queue("limit")
    worker = coord.register_worker("limit", recorded, pool="solo", max_restarts=1)
    kill_worker_group(worker.pid)
    again = wait_until(
        lambda: (s := coord.get_worker(worker.id)).state is WorkerState.RUNNING and s.restarts == 1 and s,
        30, "the first restart")
    kill_worker_group(again.pid)
    wait_until(lambda: [e for e in events(coord, "limit", "worker") if e["action"] == "gave_up"], 10, "gave_up")
    status = coord.get_worker(worker.id)
    assert status.state is WorkerState.CRASHED and status.restarts == 1 and status.pid is None
    assert [e["action"] for e in events(coord, "limit", "worker")] == ["crashed", "restarted", "crashed", "gave_up"]

    # scale_workers replaces a worker the supervisor gave up on
    result = coord.scale_workers("limit", 1)
    assert (result.previous, result.current, len(result.started)) == (0, 1, 1)
    job = coord.enqueue_job("limit", {"seconds": 0.01})
    assert coord.wait_for_job("limit", job.id, 30).state is JobState.COMPLETED


def test_pause_holds_across_a_restart(coord: JobQueueCoordinator) -> None:
    coord.create_queue("held")
    worker = coord.register_worker("held", recorded, pool="solo")
    coord.pause_worker(worker.id)
    kill_worker_group(worker.pid)
    again = wait_until(
        lambda: (s := coord.get_worker(worker.id)).state is WorkerState.PAUSED and s.restarts == 1 and s,
        30, "the restarted worker, paused")
    job = coord.enqueue_job("held", {"seconds": 0.01})
    # two heartbeats of the new process later, the job is still untouched
    wait_until(lambda: coord.get_worker(worker.id).last_heartbeat > again.last_heartbeat, 10, "a heartbeat")
    later = coord.get_worker(worker.id)
    wait_until(lambda: coord.get_worker(worker.id).last_heartbeat > later.last_heartbeat, 10, "another heartbeat")
    assert coord.get_job("held", job.id).state is JobState.WAITING

    coord.resume_worker(worker.id)
    assert coord.wait_for_job("held", job.id, 30).worker_id == worker.node_name


def test_worker_that_stops_making_progress_is_restarted(coord: JobQueueCoordinator) -> None:
    coord.create_queue("stuck")
    coord._workers.supervisor.stuck_after_s = 3
    worker = coord.register_worker("stuck", recorded, pool="prefork", concurrency=1)
    for child in psutil.Process(worker.pid).children():
        os.kill(child.pid, signal.SIGSTOP)  # alive, heartbeat fine, but nothing gets done
    jobs = [coord.enqueue_job("stuck", {"seconds": 0.01}) for _ in range(3)]

    for job in jobs:
        assert coord.wait_for_job("stuck", job.id, 60).state is JobState.COMPLETED
    crash = [e for e in events(coord, "stuck", "worker") if e["action"] == "crashed"]
    assert [e["reason"] for e in crash] == ["no progress"]
    assert coord.get_worker(worker.id).restarts == 1
