"""A managing process for the signal tests: one managed worker, jobs enqueued, then it idles.

Usage: python pool_manager_script.py REDIS_URL PREFIX QUEUE JOBS SECONDS
"""

from __future__ import annotations

import sys
import time

from coordinator import JobQueueCoordinator
from worker_processors import recorded


def main() -> None:
    url, prefix, queue, count, seconds = sys.argv[1:6]
    coord = JobQueueCoordinator(url, prefix=prefix, stalled_interval_ms=1000, lock_duration_ms=2000,
                                promote_interval_ms=50)
    coord.create_queue(queue)
    coord.register_worker(queue, recorded, pool="solo")
    coord.enqueue_bulk(queue, [{"data": {"seconds": float(seconds)}} for _ in range(int(count))])
    while True:
        time.sleep(0.1)


if __name__ == "__main__":
    main()
