"""Redis Sentinel: the master SIGKILLed under a stream of jobs; the replica is promoted and the
producer and the worker carry on against it by themselves.

What is and is not guaranteed: Redis replicates asynchronously, so an enqueue the old master
acknowledged in the last moments before it died may never reach the replica; such a job is lost
(its record is absent on the new master). Every job whose record reached the new master is
finished exactly once in the registry. The test counts both and asserts the second, and that every
job accepted before a replication checkpoint (a write acknowledged by the replica through `WAIT`)
survives the failover.
"""

from __future__ import annotations

import threading
import time

from coordinator import JobQueueCoordinator, JobState, RedisUnavailableError
from coordinator.sentinel import SentinelTarget
from tests import processors
from tests.support.faults import completions
from tests.support.sentinel import SentinelGroup
from tests.support.waiting import wait_until

BEFORE, AFTER = 60, 60


def test_master_killed_replica_promoted_producers_and_workers_carry_on(scaleout_report) -> None:
    with SentinelGroup() as group:
        coord = JobQueueCoordinator(group.url(), prefix="sent", stalled_interval_ms=1000, lock_duration_ms=2000,
                                    promote_interval_ms=50, socket_timeout_s=1, events_max_len=1_000_000)
        try:
            coord.create_queue("q", retention={"completed_count": 10_000})
            coord.register_worker("q", processors.echo, pool="solo")
            # The Sentinel transport keeps the poison guard: a non-message is recorded, the worker lives.
            coord._redis.lpush(coord.keys.for_queue("q").broker_list(0), "not a kombu message")
            phase(lambda: coord.get_queue_status("q").counts.failed == 1, "poison item recorded as failed")
            accepted: list[str] = []
            raised = 0
            stop = threading.Event()

            def produce() -> None:
                nonlocal raised
                n = 0
                while not stop.is_set():
                    try:  # an explicit job id: repeating a raised enqueue cannot double the job
                        accepted.append(coord.enqueue_job("q", {"n": n}, job_id=f"j{n}").id)
                        n += 1
                    except RedisUnavailableError:
                        raised += 1
                    time.sleep(0.01)

            producer = threading.Thread(target=produce)
            producer.start()
            try:
                phase(lambda: len(accepted) >= BEFORE, "jobs accepted before the kill")
                # A replication checkpoint: every write the master took before this SET is on the
                # replica once WAIT returns 1, so the jobs accepted before it must survive the failover.
                replicated = len(accepted)
                admin = group.master.client()
                admin.set("sent:checkpoint", "1")
                assert admin.execute_command("WAIT", 1, 10_000) == 1
                old_port = group.master.port
                group.master.kill()
                assert group.master.process.returncode == -9  # the fault happened: SIGKILL
                killed_at = time.monotonic()
                at_kill = len(accepted)
                phase(lambda: group.master_port() == group.replica.port, "replica promoted")
                promoted_s = time.monotonic() - killed_at
                phase(lambda: len(accepted) >= at_kill + AFTER, "jobs accepted after the kill")
                first_after = accepted[at_kill]
                phase(lambda: _state(coord, first_after) is JobState.COMPLETED, "first job after the kill done")
                recovered_s = time.monotonic() - killed_at
            finally:
                stop.set()
                producer.join()
            assert group.master_port() != old_port
            # Every job the new master knows completes exactly once; the rest is what async replication lost.
            known = [job_id for job_id in accepted if _exists(coord, job_id)]
            phase(lambda: all(_state(coord, j) is JobState.COMPLETED for j in known), "every known job done")
            done = completions(coord, "q")
            assert all(done[job_id] == 1 for job_id in known)
            lost = len(accepted) - len(known)
            assert set(accepted[:replicated]) <= set(known)  # only writes after the checkpoint may be lost
            duplicated = sum(count - 1 for count in done.values() if count > 1)
            _beat_and_results_reach_new_master(coord, group)
        finally:
            coord.shutdown(timeout=10)
    scaleout_report.add(
        "Sentinel: master SIGKILLed mid-stream, replica promoted", len(accepted), lost, duplicated, recovered_s,
        note=f"promoted after {promoted_s:.1f} s; {raised} enqueues raised and were repeated; "
             f"{replicated} jobs before the replication checkpoint all kept",
    )


def phase(predicate, what: str, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    """Wait for one step of the scenario, naming the step if it does not happen."""
    wait_until(predicate, timeout, what)


def _beat_and_results_reach_new_master(coord: JobQueueCoordinator, group: SentinelGroup) -> None:
    """redbeat's client and Celery's result backend find the promoted master through the sentinels too."""
    from redbeat.schedulers import get_redis

    get_redis(coord.app).set(f"{coord.keys.beat}:probe", "1")
    coord.app.backend.set(f"{coord.settings.prefix}:result-probe", "1")
    survivor = group.replica.client()
    assert survivor.get(f"{coord.keys.beat}:probe") == "1"
    assert survivor.get(f"{coord.settings.prefix}:result-probe") == "1"


def _exists(coord: JobQueueCoordinator, job_id: str) -> bool:
    return _state(coord, job_id) is not None


def _state(coord: JobQueueCoordinator, job_id: str) -> JobState | None:
    try:
        job = coord.get_job("q", job_id)
    except RedisUnavailableError:
        return None
    return None if job is None else job.state


def test_sentinel_url_forms_and_settings() -> None:
    from coordinator.settings import Settings, redact_url, settings_from_env

    ours = Settings(url="sentinel://:s3cret@10.0.0.1:26379,10.0.0.2/2?master_name=main")
    target = ours.sentinel_target(ours.url)
    assert target.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26379))
    assert (target.master, target.db, target.password) == ("main", 2, "s3cret")
    assert target.kombu_url == "sentinel://:s3cret@10.0.0.1:26379/2;sentinel://:s3cret@10.0.0.2:26379/2"
    kombu_form = settings_from_env({"REDIS_URL": target.kombu_url, "REDIS_SENTINEL_MASTER": "main",
                                    "REDIS_SENTINEL_PASSWORD": "sentinel-pw"})
    assert kombu_form.sentinel_target(kombu_form.url) == SentinelTarget(
        target.sentinels, "main", 2, None, "s3cret", "sentinel-pw")
    assert kombu_form.broker_is_redis
    for url in (ours.url, target.kombu_url):
        assert "s3cret" not in redact_url(url)
    try:
        Settings(url="sentinel://10.0.0.1:26379/0")
    except ValueError as exc:
        assert "REDIS_SENTINEL_MASTER" in str(exc)
    else:
        raise AssertionError("a Sentinel URL without a master name was accepted")
