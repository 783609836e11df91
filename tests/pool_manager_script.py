"""A managing process for the signal tests: one managed worker, jobs enqueued, then it idles.

Usage: python pool_manager_script.py REDIS_URL PREFIX QUEUE JOBS SECONDS [HOLD_FILE]

While HOLD_FILE exists the main thread idles holding the lock of the supervisor's stop event (a
lock the signal path takes: ``Event.set`` in `BackgroundLoop.stop`), printing ``holding`` and
``released`` around the hold: a signal handler that took that lock itself would wait for the
code it interrupted, for ever.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, cast

from coordinator import JobQueueCoordinator
from worker_processors import recorded


def main() -> None:
    url, prefix, queue, count, seconds = sys.argv[1:6]
    hold = Path(sys.argv[6]) if len(sys.argv) > 6 else None
    coord = JobQueueCoordinator(url, prefix=prefix, stalled_interval_ms=1000, lock_duration_ms=2000,
                                promote_interval_ms=50)
    coord.create_queue(queue)
    coord.register_worker(queue, recorded, pool="solo")
    coord.enqueue_bulk(queue, [{"data": {"seconds": float(seconds)}} for _ in range(int(count))])
    stop_lock = cast(Any, coord._workers.supervisor.loop.stopping)._cond
    while True:
        if hold and hold.exists():
            with stop_lock:
                print("holding", flush=True)
                while hold.exists():
                    time.sleep(0.05)
                print("released", flush=True)
        time.sleep(0.1)


if __name__ == "__main__":
    main()
