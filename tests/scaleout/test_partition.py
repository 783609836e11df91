"""A network partition between worker hosts: two `coordinator worker` hosts in network
namespaces reach one Redis over veth links; the link of the host running a job is cut mid-job.
The other host recovers the job within the stalled-job interval; when the link returns, the cut
host's late finish is fenced off by the dispatch token and records no second completion.

Needs root and `ip netns`: skipped without them, except in CI (CI=true), where that fails.
"""

from __future__ import annotations

import time
from pathlib import Path

from coordinator import JobQueueCoordinator, JobState
from coordinator.cli import live_workers
from tests.support.faults import completions
from tests.support.hosts import redis_bind_args, start_host_worker, stop_worker
from tests.support.netns import NetnsHost, NetnsHosts, require_netns
from tests.support.servers import RedisServer
from tests.support.waiting import wait_until

PREFIX = "part"
JOB_SECONDS = 8


def test_cut_link_mid_job_recovered_elsewhere_and_late_finish_fenced(scaleout_report, tmp_path: Path) -> None:
    require_netns()
    with NetnsHosts(2) as hosts, RedisServer(*redis_bind_args(hosts)) as server:
        coord = JobQueueCoordinator(server.url, prefix=PREFIX, stalled_interval_ms=1000, lock_duration_ms=2000,
                                    promote_interval_ms=50)
        workers = []
        try:
            coord.create_queue("q")
            workers = [start_host_worker(h, server.port, PREFIX, "q", "tests.scaleout.host_app:slow_recorded",
                                         log=tmp_path / f"{h.hostname}.log") for h in hosts]
            wait_until(lambda: {w["host"] for w in live_workers(coord)} == {h.hostname for h in hosts}, timeout=60)
            runs_key = f"{PREFIX}:test:runs"
            job = coord.enqueue_job("q", {"seconds": JOB_SECONDS, "key": runs_key})
            first = wait_until(lambda: _running_on(coord, job.id), timeout=30)
            victim, survivor = _split(hosts, first)

            assert victim.reaches(server.port)
            victim.cut()
            cut_at = time.monotonic()
            assert not victim.reaches(server.port)  # the fault happened: the victim cannot reach Redis
            wait_until(lambda: _running_on(coord, job.id) == survivor.hostname, timeout=60)
            recovered_s = time.monotonic() - cut_at
            victim.restore()

            done = coord.wait_for_job("q", job.id, timeout=60)
            events = [f for _, f in coord._redis.xrange(coord.keys.for_queue("q").events)]
            assert done.state is JobState.COMPLETED, (done.failed_reason, events)
            assert coord._redis.hget(coord.keys.for_queue("q").job(job.id), "host") == survivor.hostname
            # Both runs reached their end (the victim's after its link came back) ...
            runs = wait_until(lambda: _two(server.client().lrange(runs_key, 0, -1)), timeout=60)
            assert sorted(runs) == sorted([f"{victim.hostname}:1", f"{survivor.hostname}:2"])
            # ... and the victim's finish was refused by token: one completion, the survivor's.
            victim_log = tmp_path / f"{victim.hostname}.log"
            wait_until(lambda: "no longer owns the job" in victim_log.read_text(errors="replace"), timeout=30)
            completed = completions(coord, "q")[job.id]
            assert completed == 1
            assert coord.get_job("q", job.id).result == f"{survivor.hostname}:2"
            stalled = [f for _, f in coord._redis.xrange(coord.keys.for_queue("q").events) if f["event"] == "stalled"]
            assert len(stalled) == 1
        finally:
            for worker in workers:
                stop_worker(worker)
            coord.shutdown(timeout=10)
    scaleout_report.add("Partition: running host's link cut mid-job", 1, 1 - min(completed, 1), completed - 1,
                        recovered_s, note=f"{len(runs)} runs (one per host), {len(stalled)} stalled recovery; "
                                          "the cut-off host's late finish refused by token")


def _running_on(coord: JobQueueCoordinator, job_id: str) -> str | None:
    """The host running the job now, or None if it is not active."""
    fields = coord._redis.hmget(coord.keys.for_queue("q").job(job_id), "state", "host")
    return fields[1] if fields[0] == "active" else None


def _split(hosts: list[NetnsHost], running: str) -> tuple[NetnsHost, NetnsHost]:
    victim = next(h for h in hosts if h.hostname == running)
    return victim, next(h for h in hosts if h is not victim)


def _two(runs: list[str]) -> list[str] | None:
    return runs if len(runs) >= 2 else None
