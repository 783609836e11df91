"""Redis paused, connections killed, Redis restarted with AOF: nothing lost, nothing doubled."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import redis

from coordinator import JobState, RedisUnavailableError
from coordinator.dispatch import delivery_tag
from tests import processors
from tests.support.faults import coordinator_on, diagnosis, lost_and_duplicated
from tests.support.report import scaled
from tests.support.servers import RedisServer
from tests.support.waiting import WAIT_S, wait_until


def test_paused_redis_makes_enqueue_time_out_then_everything_recovers(report) -> None:
    with RedisServer() as server, coordinator_on(server, socket_timeout_s=1) as coord:
        coord.create_queue("q")
        coord.register_worker("q", processors.echo, pool="solo")
        assert coord.wait_for_job("q", coord.enqueue_job("q", 1).id, timeout=WAIT_S).state is JobState.COMPLETED

        server.client().client_pause(3000)
        started = time.monotonic()
        with pytest.raises(RedisUnavailableError, match="socket_timeout_s"):
            coord.enqueue_job("q", 2, job_id="during-pause")
        raised_after = time.monotonic() - started

        job = wait_until(lambda: _try(lambda: coord.enqueue_job("q", 2, job_id="during-pause")), timeout=WAIT_S)
        done = coord.wait_for_job("q", job.id, timeout=WAIT_S)
        recovered = time.monotonic() - started
        assert done.state is JobState.COMPLETED
        lost, duplicated = lost_and_duplicated(coord, "q", ["during-pause"])
        assert (lost, duplicated) == (0, 0)
    report.add("Redis paused 3 s (CLIENT PAUSE), socket_timeout_s=1", 2, lost, duplicated, recovered,
               note=f"enqueue raised RedisUnavailableError after {raised_after:.1f} s")


@pytest.mark.timeout(900)  # a loaded two-core machine runs a few dozen jobs a second
def test_connections_killed_during_enqueues(report) -> None:
    count = scaled(2000, 50_000)
    with RedisServer() as server, coordinator_on(server) as coord:
        coord.create_queue("q", retention={"completed_count": count})
        admin = server.client()
        stop = threading.Event()
        kills = 0

        def killer() -> None:
            nonlocal kills
            while not stop.wait(0.02):
                kills += admin.client_kill_filter(_type="normal", skipme=True)

        thread = threading.Thread(target=killer)
        thread.start()
        returned, raised = [], []
        for n in range(count):
            job_id = f"job-{n}"
            try:
                returned.append(coord.enqueue_job("q", {"n": n}, job_id=job_id).id)
            except RedisUnavailableError:
                raised.append(job_id)
        stop.set()
        thread.join()
        assert kills > 0  # the fault happened: the coordinator's connections were killed under it

        coord.register_worker("q", processors.echo, pool="threads", concurrency=4)
        existing = [j for j in (f"job-{n}" for n in range(count)) if coord.get_job("q", j) is not None]
        assert set(returned) <= set(existing)  # every returned job exists; a raised one may or may not
        try:
            wait_until(lambda: coord.get_queue_status("q").counts.completed == len(existing), timeout=600)
        except AssertionError as exc:
            raise AssertionError(diagnosis(coord, "q")) from exc
        lost, duplicated = lost_and_duplicated(coord, "q", existing)
        assert (lost, duplicated) == (0, 0)
        assert all(j.state is JobState.COMPLETED for j in coord.get_jobs("q", ["completed"]))
        assert not coord.get_jobs("q", ["waiting", "active", "delayed", "failed"])
    report.add(f"CLIENT KILL every 20 ms during {count} enqueues", count, lost, duplicated,
               note=f"{kills} connections killed, {len(raised)} enqueues raised, none half-written")


def test_redis_restart_with_aof_loses_nothing(report) -> None:
    count = scaled(200, 1000)
    with RedisServer("--appendonly", "yes", "--appendfsync", "always") as server, coordinator_on(server) as coord:
        coord.create_queue("q")
        coord.register_worker("q", processors.sleepy, pool="threads", concurrency=2)
        ids = []
        raised: list[Exception] = []
        restarted_at = None
        for n in range(count):
            if n == count // 2:
                run_id = server.client().info("server")["run_id"]
                server.restart()
                restarted_at = time.monotonic()
                assert server.client().info("server")["run_id"] != run_id  # a new server process
            job = wait_until(lambda: _try(lambda: coord.enqueue_job("q", {"seconds": 0.01}, job_id=f"j{n}"),
                                          raised), timeout=WAIT_S)
            ids.append(job.id)
        try:
            wait_until(lambda: _try(lambda: coord.get_queue_status("q").counts.completed == count), timeout=120)
        except AssertionError as exc:
            raise AssertionError(diagnosis(coord, "q")) from exc
        recovered = time.monotonic() - restarted_at
        lost, duplicated = lost_and_duplicated(coord, "q", ids)
        assert (lost, duplicated) == (0, 0)
    report.add("Redis restarted mid-stream, AOF appendfsync always", count, lost, duplicated, recovered,
               note=f"{count - count // 2} enqueues after the restart; {len(raised)} raised and were repeated")


def test_a_claim_cut_off_by_a_redis_timeout_loses_no_job(report) -> None:
    """Found by the soak (bench/soak): a worker whose claim of a prefetched message timed out
    (Redis paused longer than socket_timeout_s) acked the message without running the job, which
    then stayed waiting for ever with no message anywhere."""
    with RedisServer() as server, coordinator_on(server, socket_timeout_s=1) as coord:
        coord.create_queue("q")
        worker = coord.register_worker("q", processors.sleepy, pool="threads", concurrency=1)
        first = coord.enqueue_job("q", {"seconds": 1.5})
        wait_until(lambda: coord.get_job("q", first.id).state is JobState.ACTIVE, timeout=WAIT_S)
        held = coord.enqueue_job("q", {"seconds": 0.01})  # prefetched while the first one runs
        tag = delivery_tag(coord.celery_queue("q"), held.id, 1)
        wait_until(lambda: server.client().hexists(coord.keys.unacked, tag), timeout=WAIT_S)
        server.client().client_pause(5000)  # the first job's finish, then the held one's claim, time out
        started = time.monotonic()
        time.sleep(5)  # this test's own calls would time out as well meanwhile
        try:
            done = wait_until(lambda: _try(lambda: _final(coord, "q", held.id)), timeout=WAIT_S)
        except AssertionError as exc:
            state = coord.get_job("q", held.id).state.value
            raise AssertionError(f"held job {state}; {diagnosis(coord, 'q')}") from exc
        recovered = time.monotonic() - started
        log = Path(coord.get_worker(worker.id).log_file).read_text(errors="replace")
        assert f"{held.id}.1" in log and "socket_timeout_s" in log  # its claim did time out
        assert done.state is JobState.COMPLETED
        first_done = wait_until(lambda: _try(lambda: _final(coord, "q", first.id)), timeout=WAIT_S)
        assert first_done.state is JobState.COMPLETED
        lost, duplicated = lost_and_duplicated(coord, "q", [first.id, held.id])
        assert (lost, duplicated) == (0, 0)
    report.add("Redis paused 5 s while a worker claims a prefetched job, socket_timeout_s=1", 2, lost, duplicated,
               recovered, note="the claim timed out and was repeated until Redis answered")


def _final(coord, queue: str, job_id: str):
    """The job if it is in a final state, else None."""
    job = coord.get_job(queue, job_id)
    return job if job is not None and job.state.is_final else None


def _try(call, raised: list[Exception] | None = None):
    """The call's value, or None while Redis is away (the error appended to ``raised``)."""
    try:
        return call()
    except (RedisUnavailableError, redis.RedisError) as exc:
        if raised is not None:
            raised.append(exc)
        return None


def test_a_message_lost_with_the_broker_connection_is_dispatched_again(report) -> None:
    """The in-flight message of a live worker's consumer (BRPOP answered, not yet unacked) is gone
    when its connection drops; here it is taken out of the broker list by hand, then every
    connection of the worker is killed: the consumer reconnects and re-dispatches the job."""
    with RedisServer() as server, coordinator_on(server) as coord:
        coord.create_queue("q")
        job = coord.enqueue_job("q", {"n": 1})
        admin = server.client()
        keys = coord.keys.for_queue("q")
        assert sum(admin.delete(key) for key in keys.broker_lists) == 1  # the message is nowhere now
        worker = coord.register_worker("q", processors.echo, pool="solo")
        assert coord.get_job("q", job.id).state is JobState.WAITING
        # the consumer's BRPOP must be on the wire, or the kill cuts no broker connection (a worker
        # reports consuming a moment before its event loop sends the first BRPOP)
        wait_until(lambda: any(c["cmd"] == "brpop" for c in admin.client_list()), what="the worker's BRPOP")
        killed = admin.client_kill_filter(_type="normal", skipme=True)  # the worker's and ours: all reconnect
        assert killed > 0
        started = time.monotonic()
        done = coord.wait_for_job("q", job.id, timeout=WAIT_S)
        assert done.state is JobState.COMPLETED and done.attempts_made == 1
        assert coord.get_worker(worker.id).pid == worker.pid  # the same live worker, not a restart
        lost, duplicated = lost_and_duplicated(coord, "q", [job.id])
        assert (lost, duplicated) == (0, 0)
    report.add("in-flight message lost with the broker connection", 1, lost, duplicated,
               time.monotonic() - started, note=f"{killed} connections killed; job dispatched again")


def test_a_batch_whose_block_met_a_redis_outage_is_still_sealed(report, caplog: pytest.LogCaptureFixture) -> None:
    """Found by the soak (bench/soak, seed 7): a batch whose ``with`` block ended while Redis
    restarted was never sealed, so its on_complete callback waited in waiting_children for ever
    and kept its members from retention. The seal now waits Redis out."""
    from coordinator import FlowJob
    from coordinator.testing import run_jobs

    with RedisServer("--appendonly", "yes", "--appendfsync", "always") as server, coordinator_on(server) as coord:
        coord.create_queue("q")
        coord.create_queue("done")
        batch = coord.batch(on_complete=FlowJob(queue="done", data="all in"))
        with caplog.at_level("WARNING", logger="coordinator.patience"), batch:
            member = batch.enqueue_job("q", {"n": 1})
            server.stop()
            restart = threading.Timer(1.5, server.start)
            restart.start()
            started = time.monotonic()
        restart.join()
        assert any("seal of batch" in r.getMessage() for r in caplog.records)  # the seal met the outage
        status = coord.get_batch(batch.id)
        assert status.sealed and status.on_complete
        assert [job.id for job in run_jobs(coord, "q", processor=lambda job: job.data)] == [member.id]
        callback = run_jobs(coord, "done", processor=lambda job: job.data)
        assert [f"done:{job.id}" for job in callback] == [status.on_complete]
        assert callback[0].state is JobState.COMPLETED and coord.get_batch(batch.id).done
    report.add("batch sealed across a Redis restart", 1, 0, 0, time.monotonic() - started,
               note="the seal repeated until Redis answered; the callback ran once")
