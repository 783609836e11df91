"""``python -m bench.enqueue_cpu [plain|grouped]``: CPU per enqueued job, client and Redis.

A throwaway `redis-server`; 3,000 jobs enqueued one per call, then 3,000 by `enqueue_bulk`.
Prints the client's process time and the server's ``INFO cpu`` per job: figures that a loaded
machine disturbs far less than rates (BENCHMARKS.md, issue 15: grouped against plain jobs).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import redis

from coordinator import JobQueueCoordinator
from coordinator.redis_server import RedisServer

JOBS = 3000


def measure(mode: str) -> str:
    server = RedisServer().start()
    try:
        coord = JobQueueCoordinator(server.url, prefix="cpu")
        coord.create_queue("q")
        client = redis.Redis.from_url(server.url)
        fields: dict[str, Any] = {"group": "t"} if mode == "grouped" else {}
        for i in range(200):  # warm: scripts loaded, config cached
            coord.enqueue_job("q", {"i": i}, **fields)

        def cpu() -> float:
            info = client.info("cpu")
            return float(info["used_cpu_user"] + info["used_cpu_sys"])

        redis0, client0 = cpu(), time.process_time()
        for i in range(JOBS):
            coord.enqueue_job("q", {"i": i}, **fields)
        redis1, client1 = cpu(), time.process_time()
        options = {"options": fields} if fields else {}
        for start in range(0, JOBS, 500):
            coord.enqueue_bulk("q", [{"data": {"i": i}, **options} for i in range(500)])
        redis2, client2 = cpu(), time.process_time()
        coord.shutdown()
        per = 1000 / JOBS
        return (f"{mode}: one per call: client {(client1 - client0) * per:.3f} ms/job, Redis "
                f"{(redis1 - redis0) * per:.3f} ms/job | bulk: client {(client2 - client1) * per:.3f}, "
                f"Redis {(redis2 - redis1) * per:.3f}")
    finally:
        server.close()


if __name__ == "__main__":
    for name in sys.argv[1:] or ["plain", "grouped"]:
        print(measure(name), flush=True)
