"""How long `get_health()` takes with 20 queues of 10 waiting jobs (a probe runs it every few seconds).

Run: python bench/health_probe.py [redis-url]
"""

from __future__ import annotations

import statistics
import sys
import time
import uuid

from coordinator import JobQueueCoordinator

QUEUES, JOBS, ROUNDS = 20, 10, 200


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/0"
    coord = JobQueueCoordinator(url, prefix=f"bench-health-{uuid.uuid4().hex[:6]}")
    try:
        for i in range(QUEUES):
            coord.create_queue(f"q{i}")
            coord.enqueue_bulk(f"q{i}", [{"data": j} for j in range(JOBS)])
        coord.get_health()
        took = []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            coord.get_health()
            took.append((time.perf_counter() - started) * 1000)
        took.sort()
        print(f"get_health, {QUEUES} queues: median {statistics.median(took):.2f} ms, "
              f"p95 {took[int(ROUNDS * 0.95) - 1]:.2f} ms over {ROUNDS} calls")
    finally:
        for name in coord.get_queue_names():
            coord.delete_queue(name)
        coord.shutdown()


if __name__ == "__main__":
    main()
