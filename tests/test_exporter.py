"""Metrics over a known mix of successes and failures, and the Prometheus exporter scraped over HTTP."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from coordinator import JobQueueCoordinator
from coordinator.exporter import register_collector, serve_metrics
from tests import obs_processors
from tests.support.servers import free_port

SUCCESSES, FAILURES = 6, 2


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of an exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        assert reply.status == 200
        return reply.read().decode()


@pytest.fixture
def mixed(coord: JobQueueCoordinator) -> Iterator[JobQueueCoordinator]:
    """Queue ``mix`` after SUCCESSES completed and FAILURES failed jobs on a real worker."""
    coord.create_queue("mix")
    coord.register_worker("mix", obs_processors.maybe_fail, pool="solo", concurrency=1)
    jobs = coord.enqueue_bulk("mix", [{"data": {"fail": False}}] * SUCCESSES
                              + [{"data": {"fail": True}, "options": {"max_retries": 0}}] * FAILURES)
    for job in jobs:
        coord.wait_for_job("mix", job.id, timeout=30)
    yield coord


def test_metrics_and_error_rate_over_a_known_mix(mixed: JobQueueCoordinator) -> None:
    status = mixed.get_queue_status("mix")
    assert status.counts.completed == SUCCESSES and status.counts.failed == FAILURES
    metrics = status.health.metrics
    assert metrics.error_rate == pytest.approx(FAILURES / (SUCCESSES + FAILURES))
    assert metrics.throughput > 0
    assert metrics.average_processing_time >= 0
    series = mixed.get_metrics("mix", minutes=3)
    assert len(series) == 3
    assert series[0].minute < series[1].minute < series[2].minute
    assert sum(p.completed for p in series) == SUCCESSES
    assert sum(p.failed for p in series) == FAILURES
    busiest = max(series, key=lambda p: p.completed + p.failed)
    assert busiest.average_processing_time == pytest.approx(
        busiest.processing_time_ms / (busiest.completed + busiest.failed), abs=0.001)


def test_prometheus_endpoint_scraped_over_http(mixed: JobQueueCoordinator) -> None:
    port = free_port()
    server, thread = serve_metrics(mixed, port=port, block=False)
    try:
        found = samples(scrape(port))
    finally:
        server.shutdown()  # type: ignore[attr-defined]
    q = (("queue", "mix"),)
    assert found[("jqc_up", ())] == 1
    assert found[("jqc_queue_jobs", (("queue", "mix"), ("state", "completed")))] == SUCCESSES
    assert found[("jqc_queue_jobs", (("queue", "mix"), ("state", "failed")))] == FAILURES
    assert found[("jqc_queue_jobs", (("queue", "mix"), ("state", "waiting")))] == 0
    assert found[("jqc_jobs_completed_total", q)] == SUCCESSES
    assert found[("jqc_jobs_failed_total", q)] == FAILURES
    assert found[("jqc_job_processing_seconds_count", q)] == SUCCESSES + FAILURES
    assert found[("jqc_job_processing_seconds_bucket", (("le", "+Inf"), ("queue", "mix")))] == SUCCESSES + FAILURES
    assert found[("jqc_job_processing_seconds_sum", q)] >= 0
    assert found[("jqc_queue_error_rate", q)] == pytest.approx(0.25)
    assert found[("jqc_queue_paused", q)] == 0
    assert found[("jqc_workers_live", q)] == 1
    assert found[("jqc_managed_workers", (("queue", "mix"), ("state", "running")))] == 1


def test_collector_added_to_an_apps_own_registry(coord: JobQueueCoordinator) -> None:
    coord.create_queue("own")
    coord.pause_queue("own")
    coord.enqueue_bulk("own", [{"data": i} for i in range(4)])
    registry = CollectorRegistry()
    register_collector(coord, registry)
    found = samples(generate_latest(registry).decode())
    assert found[("jqc_queue_jobs", (("queue", "own"), ("state", "waiting")))] == 4
    assert found[("jqc_queue_paused", (("queue", "own"),))] == 1
    assert found[("jqc_queue_oldest_waiting_seconds", (("queue", "own"),))] >= 0
    assert found[("jqc_jobs_completed_total", (("queue", "own"),))] == 0


def test_scrape_with_redis_down_reports_up_zero(prefix: str) -> None:
    coord = JobQueueCoordinator(f"redis://127.0.0.1:{free_port()}/0", prefix=prefix)
    registry = CollectorRegistry()
    register_collector(coord, registry)
    found = samples(generate_latest(registry).decode())
    assert found[("jqc_up", ())] == 0
    assert not any(name.startswith("jqc_queue") for name, _ in found)


def test_poison_messages_count_as_failed_jobs_in_every_series(coord: JobQueueCoordinator) -> None:
    """A poison message (what a worker's consumer records when it cannot run a message) is a failed
    job: it raises the error rate and `jqc_jobs_failed_total` alike, and shows in the minute series."""
    coord.create_queue("poisoned")
    registry = coord._registry  # the write the worker's consumer makes (runtime/consumer.py)
    registry.record_poison("poisoned", b"\x80 not a kombu message", "undecodable message: test")
    registry.record_poison("poisoned", b"{}", "unknown task: test")
    collector_registry = CollectorRegistry()
    register_collector(coord, collector_registry)
    found = samples(generate_latest(collector_registry).decode())
    q = (("queue", "poisoned"),)
    assert found[("jqc_queue_jobs", (("queue", "poisoned"), ("state", "failed")))] == 2
    assert found[("jqc_jobs_failed_total", q)] == 2
    assert found[("jqc_queue_error_rate", q)] == 1.0
    assert found[("jqc_jobs_completed_total", q)] == 0
    assert sum(point.failed for point in coord.get_metrics("poisoned", minutes=2)) == 2


def test_group_series_keep_label_cardinality_bounded(coord: JobQueueCoordinator) -> None:
    """Twelve groups: the ten with the most waiting jobs get a label each, the rest one "other"."""
    from coordinator.groups import GROUPS_SHOWN

    coord.create_queue("tenants", concurrency=5)
    coord.pause_queue("tenants")
    coord.set_limiter("api", max_concurrent=3)
    coord.enqueue_bulk("tenants", [{"data": i, "options": {"group": f"t{g:02d}"}}
                                   for g in range(GROUPS_SHOWN + 2) for i in range(g + 1)])
    coord.pause_group("tenants", "t11")
    registry = CollectorRegistry()
    register_collector(coord, registry)
    found = samples(generate_latest(registry).decode())
    groups = {dict(labels)["group"]: value for (name, labels), value in found.items() if name == "jqc_group_waiting"}
    assert len(groups) == GROUPS_SHOWN + 1
    assert groups["t11"] == 12 and groups["t02"] == 3 and "t01" not in groups
    assert groups["other"] == 1 + 2  # t00 and t01
    assert found[("jqc_group_paused", (("group", "t11"), ("queue", "tenants")))] == 1
    assert found[("jqc_queue_groups", (("queue", "tenants"),))] == GROUPS_SHOWN + 2
    assert found[("jqc_queue_concurrency_active", (("queue", "tenants"),))] == 0
    assert found[("jqc_limiter_max", (("limiter", "api"),))] == 3
    assert found[("jqc_limiter_active", (("limiter", "api"),))] == 0
