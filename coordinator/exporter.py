"""Prometheus exporter: a custom collector that reads the registry at scrape time.

Series (label ``queue`` unless noted):

    jqc_up                                  1 when Redis answered this scrape, else 0
    jqc_queue_jobs{queue,state}             jobs per state (waiting, active, delayed, ...)
    jqc_queue_paused                        1 while the queue is paused
    jqc_queue_oldest_waiting_seconds        age of the oldest waiting job (0 when none)
    jqc_queue_throughput_per_minute         finished jobs per minute over the recent window
    jqc_queue_error_rate                    failed / finished over the recent window
    jqc_jobs_completed_total                completed jobs since the queue was created
    jqc_jobs_failed_total                   jobs failed for good since the queue was created
    jqc_job_processing_seconds              histogram of processing time of finished jobs
    jqc_workers_live                        workers with a fresh heartbeat consuming the queue
    jqc_managed_workers{queue,state}        this process's managed workers by state
    jqc_group_waiting{queue,group}          waiting jobs of the groups with the most (at most
                                            GROUPS_SHOWN per queue), the rest summed as group="other"
    jqc_group_oldest_waiting_seconds{queue,group}  age of the oldest waiting job of those groups
    jqc_group_paused{queue,group}           1 for a paused group among those shown
    jqc_queue_groups                        groups with waiting jobs
    jqc_queue_capped                        waiting jobs parked over a concurrency cap
    jqc_queue_concurrency_active            slots of the queue's cap held now (queues with a cap)
    jqc_limiter_active{limiter}             slots of a named limiter held now
    jqc_limiter_max{limiter}                a named limiter's max_concurrent

Use `serve_metrics` (what ``coordinator metrics --port`` runs) for a stand-alone endpoint, or
`register_collector` to add the series to an app that already serves ``/metrics``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from coordinator.errors import RedisUnavailableError
from coordinator.keys import STATE_INDEXES
from coordinator.metrics import Totals
from coordinator.models import WorkerState
from coordinator.settings import redact_url

if TYPE_CHECKING:
    from coordinator.facade import JobQueueCoordinator

log = logging.getLogger(__name__)

PREFIX = "jqc"


class CoordinatorCollector(Collector):
    """Collects the coordinator's series on each scrape (a few Redis round trips)."""

    def __init__(self, coord: JobQueueCoordinator) -> None:
        self.coord = coord

    def describe(self) -> list[Metric]:
        """Nothing up front: the registry then does not call `collect` at registration time."""
        return []

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(f"{PREFIX}_up", "1 when Redis answered this scrape")
        try:
            snapshots = self.coord.get_queue_snapshots()
        except RedisUnavailableError as exc:
            log.warning("metrics scrape: Redis at %s unreachable: %s", redact_url(self.coord.settings.url),
                        type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        jobs = GaugeMetricFamily(f"{PREFIX}_queue_jobs", "Jobs per queue and state", labels=["queue", "state"])
        paused = GaugeMetricFamily(f"{PREFIX}_queue_paused", "1 while the queue is paused", labels=["queue"])
        oldest = GaugeMetricFamily(f"{PREFIX}_queue_oldest_waiting_seconds", "Age of the oldest waiting job",
                                   labels=["queue"])
        throughput = GaugeMetricFamily(f"{PREFIX}_queue_throughput_per_minute",
                                       "Finished jobs per minute over the recent window", labels=["queue"])
        error_rate = GaugeMetricFamily(f"{PREFIX}_queue_error_rate", "Failed / finished over the recent window",
                                       labels=["queue"])
        completed = CounterMetricFamily(f"{PREFIX}_jobs_completed", "Completed jobs", labels=["queue"])
        failed = CounterMetricFamily(f"{PREFIX}_jobs_failed", "Jobs failed for good", labels=["queue"])
        deduplicated = CounterMetricFamily(f"{PREFIX}_jobs_deduplicated",
                                           "Enqueues that returned the job standing for their dedup key",
                                           labels=["queue"])
        processing = HistogramMetricFamily(f"{PREFIX}_job_processing_seconds",
                                           "Processing time of finished jobs", labels=["queue"])
        live = GaugeMetricFamily(f"{PREFIX}_workers_live", "Workers with a fresh heartbeat consuming the queue",
                                 labels=["queue"])
        for snap in snapshots:
            name = [snap.name]
            for state in STATE_INDEXES:
                jobs.add_metric([snap.name, state], getattr(snap.counts, state))
            paused.add_metric(name, 1 if snap.paused else 0)
            oldest.add_metric(name, snap.oldest_waiting_s or 0.0)
            throughput.add_metric(name, snap.metrics.throughput)
            error_rate.add_metric(name, snap.metrics.error_rate)
            completed.add_metric(name, snap.totals.completed)
            failed.add_metric(name, snap.totals.failed)
            deduplicated.add_metric(name, snap.totals.deduplicated)
            processing.add_metric(name, _buckets(snap.totals), sum_value=snap.totals.processing_ms / 1000)
            live.add_metric(name, snap.live_workers)
        yield from (jobs, paused, oldest, throughput, error_rate, completed, failed, deduplicated, processing, live)
        yield self._managed_workers()
        yield from self._groups([snap.name for snap in snapshots])

    def _groups(self, queues: list[str]) -> Iterator[Metric]:
        """Group and cap series; a queue's group labels are bounded: the GROUPS_SHOWN groups with
        the most waiting jobs, and ``other``."""
        waiting = GaugeMetricFamily(f"{PREFIX}_group_waiting", "Waiting jobs of a group (top groups, then other)",
                                    labels=["queue", "group"])
        oldest = GaugeMetricFamily(f"{PREFIX}_group_oldest_waiting_seconds", "Age of a group's oldest waiting job",
                                   labels=["queue", "group"])
        paused = GaugeMetricFamily(f"{PREFIX}_group_paused", "1 for a paused group", labels=["queue", "group"])
        count = GaugeMetricFamily(f"{PREFIX}_queue_groups", "Groups with waiting jobs", labels=["queue"])
        capped = GaugeMetricFamily(f"{PREFIX}_queue_capped", "Waiting jobs parked over a concurrency cap",
                                   labels=["queue"])
        cap = GaugeMetricFamily(f"{PREFIX}_queue_concurrency_active", "Slots of the queue's cap held now",
                                labels=["queue"])
        for queue in queues:
            status = self.coord.get_queue_status(queue)
            for group in status.groups:
                waiting.add_metric([queue, group.name], group.waiting)
                oldest.add_metric([queue, group.name], group.oldest_waiting_s or 0.0)
                paused.add_metric([queue, group.name], 1 if group.paused else 0)
            if status.group_count > len(status.groups):
                waiting.add_metric([queue, "other"], status.grouped_waiting - sum(g.waiting for g in status.groups))
            count.add_metric([queue], status.group_count)
            capped.add_metric([queue], status.capped)
            if status.concurrency is not None:
                cap.add_metric([queue], status.concurrency.active)
        active = GaugeMetricFamily(f"{PREFIX}_limiter_active", "Slots of a named limiter held now", labels=["limiter"])
        maximum = GaugeMetricFamily(f"{PREFIX}_limiter_max", "A named limiter's max_concurrent", labels=["limiter"])
        for limiter in self.coord.get_limiters():
            active.add_metric([limiter.name], limiter.active)
            maximum.add_metric([limiter.name], limiter.max_concurrent)
        yield from (waiting, oldest, paused, count, capped, cap, active, maximum)

    def _managed_workers(self) -> GaugeMetricFamily:
        managed = GaugeMetricFamily(f"{PREFIX}_managed_workers", "Managed workers of this process by state",
                                    labels=["queue", "state"])
        counts: dict[tuple[str, str], int] = {}
        for worker in self.coord.get_all_worker_status():
            key = (worker.queue, worker.state.value)
            counts[key] = counts.get(key, 0) + 1
        for queue in sorted({queue for queue, _ in counts}):
            for state in WorkerState:
                managed.add_metric([queue, state.value], counts.get((queue, state.value), 0))
        return managed


def _buckets(totals: Totals) -> list[tuple[str, float]]:
    """Cumulative histogram buckets (upper bound in seconds, count) as prometheus_client takes them."""
    return [("+Inf" if bound == float("inf") else f"{bound:g}", count)
            for bound, count in totals.cumulative_buckets()]


def register_collector(coord: JobQueueCoordinator, registry: CollectorRegistry = REGISTRY) -> CoordinatorCollector:
    """Add the coordinator's series to ``registry`` (prometheus_client's default one unless given),
    for an app that already serves metrics. Returns the collector (``registry.unregister`` it)."""
    collector = CoordinatorCollector(coord)
    registry.register(collector)
    return collector


def serve_metrics(coord: JobQueueCoordinator, port: int = 9808, address: str = "127.0.0.1",
                  block: bool = True) -> tuple[object, threading.Thread]:
    """Serve ``/metrics`` with only the coordinator's series on ``address:port``; with ``block``,
    until interrupted. Returns prometheus_client's (server, thread); ``server.shutdown()`` stops it."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CoordinatorCollector(coord))
    server, thread = start_http_server(port, addr=address, registry=registry)
    log.info("serving coordinator metrics on http://%s:%s/metrics", address, port)
    if block:
        try:
            thread.join()
        except KeyboardInterrupt:
            server.shutdown()
    return server, thread
