"""Throughput with 1, 2 and 4 worker hosts against one Redis.

Each host is a network namespace joined by a veth link (tests/support/netns.py) running one
`coordinator worker -P solo` for the queue; the jobs do nearly nothing, so the figure is the
coordinator's own per-job cost (start script, finish script, kombu fetch and ack, lock keeper)
and how it is shared. On a two-core machine more hosts add processes competing for the same
cores: the table shows overhead and contention, not how a real multi-machine fleet scales.

Run as root from the repository root: python bench/hosts.py [jobs-per-round]
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from coordinator import JobQueueCoordinator  # noqa: E402
from coordinator.cli import live_workers  # noqa: E402
from tests.support.hosts import redis_bind_args, start_host_worker, stop_worker  # noqa: E402
from tests.support.netns import NetnsHosts, netns_unavailable  # noqa: E402
from coordinator.redis_server import RedisServer  # noqa: E402

HOST_COUNTS = (1, 2, 4)


def run_round(server: RedisServer, hosts: list, count: int, jobs: int) -> tuple[float, Counter[str]]:
    """Seconds for ``jobs`` tiny jobs through ``count`` hosts, and how many each host ran."""
    prefix = f"bh{uuid.uuid4().hex[:6]}"
    coord = JobQueueCoordinator(server.url, prefix=prefix)
    workers = []
    try:
        coord.create_queue("q", retention={"completed_count": jobs})
        workers = [start_host_worker(h, server.port, prefix, "q", "tests.scaleout.host_app:tiny")
                   for h in hosts[:count]]
        deadline = time.monotonic() + 120
        while len(live_workers(coord)) < count:
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not start")
            time.sleep(0.1)
        started = time.perf_counter()
        coord.enqueue_bulk("q", [{"data": n} for n in range(jobs)])
        while coord.get_queue_status("q").counts.completed < jobs:
            time.sleep(0.05)
        took = time.perf_counter() - started
        per_host: Counter[str] = Counter()
        for job_id in coord._registry.client.zrange(coord.keys.for_queue("q").index("completed"), 0, -1):
            per_host[coord._registry.client.hget(coord.keys.for_queue("q").job(job_id), "host")] += 1
        return took, per_host
    finally:
        for worker in workers:
            stop_worker(worker)
        coord.delete_queue("q")
        coord.shutdown()


def main() -> None:
    reason = netns_unavailable()
    if reason:
        sys.exit(f"bench/hosts.py: {reason}")
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    print(f"{jobs} near-empty jobs per round, one `coordinator worker -P solo` per host, {os.cpu_count()} cores")
    print(f"{'hosts':>5} {'seconds':>8} {'jobs/s':>8} {'per host':>8}  jobs run by each host")
    with NetnsHosts(max(HOST_COUNTS)) as hosts, RedisServer(*redis_bind_args(hosts)) as server:
        base = None
        for count in HOST_COUNTS:
            took, per_host = run_round(server, hosts, count, jobs)
            rate = jobs / took
            base = base or rate
            spread = " ".join(str(n) for _, n in sorted(per_host.items()))
            print(f"{count:>5} {took:>8.2f} {rate:>8.0f} {rate / count:>8.0f}  {spread}  ({rate / base:.2f}x of 1 host)")


if __name__ == "__main__":
    main()
