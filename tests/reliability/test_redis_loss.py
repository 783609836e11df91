"""Redis restarted without persistence: the loss is detected and reported by get_health(), not silent."""

from __future__ import annotations

from coordinator import HealthStatus
from tests.support.faults import coordinator_on
from tests.support.servers import RedisServer
from tests.support.waiting import wait_until


def test_a_restart_without_persistence_is_reported(report) -> None:
    with RedisServer("--appendonly", "no") as server, coordinator_on(server) as coord:
        coord.create_queue("q")
        jobs = [coord.enqueue_job("q", n).id for n in range(5)]
        before = coord.get_health()
        assert not [c for c in before.checks if c.name == "registry" and c.status is not HealthStatus.HEALTHY]

        run_id = server.client().info("server")["run_id"]
        server.restart()
        assert server.client().info("server")["run_id"] != run_id  # a new server process, nothing kept
        after = wait_until(lambda: _health_once_back(coord))
        assert after.status is HealthStatus.UNHEALTHY
        assert any(r.startswith("registry: the registry was lost") for r in after.reasons), after.reasons
        lost = sum(1 for job_id in jobs if coord.get_job("q", job_id) is None)
        assert lost == 5
    [reason] = [r for r in after.reasons if r.startswith("registry:")]
    report.add("Redis restarted without persistence", len(jobs), lost, 0,
               note=f"get_health() {after.status.value}: {reason.split(' (')[0]}")


def _health_once_back(coord):
    health = coord.get_health()
    return health if any(c.name == "registry" for c in health.checks) else None
