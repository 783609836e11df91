"""get_health(): each reason going degraded or unhealthy, and back to healthy.

Most tests run on a private redis-server (AOF on, so its baseline is healthy) that they may
reconfigure; the shared Redis of the other tests is never touched.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator

import pytest

from coordinator import Health, HealthStatus, HealthThresholds, JobQueueCoordinator
from tests import obs_processors, processors
from tests.support.servers import free_port, redis_server
from tests.support.waiting import wait_until

PASSWORD = "s3cret-" + uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def own_url() -> Iterator[str]:
    with redis_server(password=PASSWORD) as url:
        yield url


@pytest.fixture
def own(own_url: str) -> Iterator[JobQueueCoordinator]:
    coord = JobQueueCoordinator(own_url, prefix=f"h{uuid.uuid4().hex[:8]}", stalled_interval_ms=1000,
                                lock_duration_ms=2000, promote_interval_ms=50)
    yield coord
    coord.shutdown(timeout=10)
    for name in coord.get_queue_names():
        coord.delete_queue(name)
    coord._redis.close()


def check(health: Health, name: str) -> str:
    return next(c.status.value for c in health.checks if c.name == name)


def test_baseline_is_healthy_and_never_shows_the_password(own: JobQueueCoordinator) -> None:
    own.create_queue("calm")
    health = own.get_health()
    assert health.status is HealthStatus.HEALTHY, health.reasons
    assert health.reasons == []
    names = {c.name for c in health.checks}
    assert {"redis", "redis_eviction", "redis_persistence", "workers", "queue calm"} <= names
    redis_check = next(c for c in health.checks if c.name == "redis")
    assert redis_check.data["latency_ms"] > 0
    assert PASSWORD not in health.model_dump_json()
    assert "***" in redis_check.data["url"]


def test_redis_down_is_unhealthy_and_back_when_it_starts(prefix: str) -> None:
    port = free_port()
    coord = JobQueueCoordinator(f"redis://:{PASSWORD}@127.0.0.1:{port}/0", prefix=prefix)
    try:
        down = coord.get_health()
        assert down.status is HealthStatus.UNHEALTHY
        assert check(down, "redis") == "unhealthy"
        assert any(r.startswith("redis: cannot reach Redis") for r in down.reasons)
        assert PASSWORD not in down.model_dump_json()
        with redis_server(port=port, password=PASSWORD):
            up = coord.get_health()
            assert up.status is HealthStatus.HEALTHY, up.reasons
    finally:
        coord._redis.close()


def test_eviction_policy_is_reported_and_back(own: JobQueueCoordinator) -> None:
    admin = own._redis
    admin.config_set("maxmemory-policy", "allkeys-lru")
    try:
        health = own.get_health()
        assert health.status is HealthStatus.DEGRADED
        assert check(health, "redis_eviction") == "degraded"
        assert any("maxmemory-policy is allkeys-lru" in r for r in health.reasons)
    finally:
        admin.config_set("maxmemory-policy", "noeviction")
    assert own.get_health().status is HealthStatus.HEALTHY


def test_no_persistence_is_reported_and_back(own: JobQueueCoordinator) -> None:
    admin = own._redis
    admin.config_set("appendonly", "no")
    try:
        health = own.get_health()
        assert health.status is HealthStatus.DEGRADED
        assert any("no persistence" in r for r in health.reasons)
        assert own.get_health(HealthThresholds(require_persistence=False)).status is HealthStatus.HEALTHY
        admin.config_set("save", "3600 1")
        rdb_only = own.get_health()
        assert rdb_only.status is HealthStatus.HEALTHY
        assert "RDB snapshots only" in next(c.detail for c in rdb_only.checks if c.name == "redis_persistence")
        admin.config_set("save", "")
    finally:
        admin.config_set("appendonly", "yes")
    assert own.get_health().status is HealthStatus.HEALTHY


def test_slow_redis_is_degraded(own: JobQueueCoordinator) -> None:
    slow = own.get_health(HealthThresholds(max_redis_latency_ms=0.000001))
    assert slow.status is HealthStatus.DEGRADED and check(slow, "redis") == "degraded"
    assert own.get_health().status is HealthStatus.HEALTHY


def test_waiting_jobs_without_a_worker_then_error_rate(own: JobQueueCoordinator) -> None:
    own.create_queue("work")
    bad = own.enqueue_job("work", {"fail": True}, max_retries=0)
    stuck = own.get_health()
    assert stuck.status is HealthStatus.UNHEALTHY
    assert "queue work: 1 jobs waiting and no live worker" in stuck.reasons
    # API.md: waiting jobs and no live worker is unhealthy, paused or not; the reason says paused
    own.pause_queue("work")
    paused = own.get_health()
    assert paused.status is HealthStatus.UNHEALTHY
    assert "queue work: 1 jobs waiting and no live worker (queue paused)" in paused.reasons
    own.resume_queue("work")
    own.register_worker("work", obs_processors.maybe_fail, pool="solo", concurrency=1)
    own.wait_for_job("work", bad.id, timeout=30)
    failing = own.get_health()
    assert failing.status is HealthStatus.DEGRADED
    assert any(r.startswith("queue work: error rate 100%") for r in failing.reasons)
    good = own.enqueue_bulk("work", [{"data": {"fail": False}} for _ in range(3)])
    for job in good:
        own.wait_for_job("work", job.id, timeout=30)
    assert own.get_health().status is HealthStatus.HEALTHY  # 1 of 4 failed: 25%


def test_backlog_and_oldest_waiting_job_thresholds(own: JobQueueCoordinator) -> None:
    own.create_queue("slowq")
    own.pause_queue("slowq")
    own.register_worker("slowq", processors.echo, pool="solo")  # live, but the queue is paused
    jobs = own.enqueue_bulk("slowq", [{"data": i} for i in range(3)])
    limits = HealthThresholds(max_backlog=2, max_oldest_waiting_s=0.2)
    time.sleep(0.3)
    health = own.get_health(limits)
    assert health.status is HealthStatus.DEGRADED
    reasons = " | ".join(health.reasons)
    assert "backlog of 3 waiting jobs over 2" in reasons
    assert "oldest waiting job is" in reasons
    queue_check = next(c for c in health.checks if c.name == "queue slowq")
    assert queue_check.data["oldest_waiting_s"] >= 0.3
    for job in jobs:
        own.cancel_job("slowq", job.id)
    assert own.get_health(limits).status is HealthStatus.HEALTHY


def test_crashed_managed_worker_is_degraded_and_back(own: JobQueueCoordinator) -> None:
    own.create_queue("crash")
    worker = own.register_worker("crash", processors.echo, pool="solo", concurrency=1)
    assert own.get_health().status is HealthStatus.HEALTHY
    os.killpg(worker.pid, signal.SIGKILL)
    seen: list[Health] = []

    def workers_degraded() -> bool:
        seen.append(own.get_health())
        return check(seen[-1], "workers") == "degraded"

    wait_until(workers_degraded, timeout=10, what="workers check degraded")
    assert seen[-1].status is HealthStatus.DEGRADED
    assert any(worker.id in r and "0 of 1 managed workers alive" in r for r in seen[-1].reasons)
    own.close_worker(worker.id, timeout=5)
    wait_until(lambda: own.get_health().status is HealthStatus.HEALTHY, timeout=20, what="healthy again")


def test_stopped_worker_with_a_stale_heartbeat_is_degraded_and_back(own: JobQueueCoordinator) -> None:
    own.create_queue("frozen")
    worker = own.register_worker("frozen", processors.echo, pool="solo", concurrency=1)
    limits = HealthThresholds(max_heartbeat_age_s=1)
    assert own.get_health(limits).status is HealthStatus.HEALTHY
    os.kill(worker.pid, signal.SIGSTOP)  # alive, but not working: liveness is not health
    try:
        wait_until(lambda: own.get_health(limits).status is HealthStatus.DEGRADED, timeout=15, what="stale heartbeat")
        assert any("no fresh heartbeat" in r for r in own.get_health(limits).reasons)
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    wait_until(lambda: own.get_health(limits).status is HealthStatus.HEALTHY, timeout=15, what="fresh heartbeat")


def test_health_is_cheap(own: JobQueueCoordinator) -> None:
    for i in range(20):
        own.create_queue(f"q{i}")
    commands_before = int(own._redis.info("stats")["total_commands_processed"])
    own.get_health()
    commands = int(own._redis.info("stats")["total_commands_processed"]) - commands_before - 1
    # ping, settings pipeline, one pipeline for all queues: about 10 commands per queue, no SCAN
    assert commands < 20 * 12 + 20


def test_unreachable_health_never_leaks_the_password_in_reasons(prefix: str) -> None:
    coord = JobQueueCoordinator(f"redis://user:{PASSWORD}@127.0.0.1:{free_port()}/0", prefix=prefix)
    try:
        text = coord.get_health().model_dump_json()
        assert PASSWORD not in text and "user:***@" in text
    finally:
        coord._redis.close()


def test_wrong_password_is_unhealthy(own_url: str, prefix: str) -> None:
    coord = JobQueueCoordinator(own_url.replace(PASSWORD, "wrong-password"), prefix=prefix)
    try:
        health = coord.get_health()
        assert health.status is HealthStatus.UNHEALTHY
        assert "wrong-password" not in health.model_dump_json()
    finally:
        coord._redis.close()


def test_redis_that_refuses_config_is_not_reported_as_failing(prefix: str) -> None:
    with redis_server("--rename-command", "CONFIG", "", "--appendonly", "no") as url:
        coord = JobQueueCoordinator(url, prefix=prefix)
        try:
            health = coord.get_health()
            assert health.status is HealthStatus.HEALTHY, health.reasons
            persistence = next(c for c in health.checks if c.name == "redis_persistence")
            assert persistence.detail == "AOF off; CONFIG GET save refused, RDB snapshots unknown"
            assert next(c for c in health.checks if c.name == "redis_eviction").data["maxmemory_policy"] == "noeviction"
        finally:
            coord._redis.close()
