"""RQ as a benchmark peer; runs in the peers' venv (bench/peers/setup.py).

    python rq_driver.py <redis url> driver   # phases on stdin, one JSON reply per line
    python rq_driver.py <redis url> worker   # one `rq` Worker (it forks a work horse per job)

Driver commands: ``enqueue N`` (N ``Queue.enqueue`` calls), ``bulk N`` (``enqueue_many`` of
5,000 jobs per call, one pipeline each), ``round_trip N`` (``enqueue`` then ``latest_result`` with
a blocking wait). The benchmark runs two workers, RQ's way of processing two jobs at a time.
"""

from __future__ import annotations

import json
import sys
import time

from redis import Redis
from rq import Queue, Worker

from rq_jobs import noop

QUEUE = "bench"
PAYLOAD = "x" * 100
BULK_CHUNK = 5000


def driver(url: str) -> None:
    queue = Queue(QUEUE, connection=Redis.from_url(url))
    for line in sys.stdin:
        command, count = line.split()
        n = int(count)
        reply: dict = {}
        started = time.perf_counter()
        if command == "enqueue":
            for _ in range(n):
                queue.enqueue(noop, PAYLOAD)
        elif command == "bulk":
            for start in range(0, n, BULK_CHUNK):
                queue.enqueue_many([Queue.prepare_data(noop, (PAYLOAD,))
                                    for _ in range(min(BULK_CHUNK, n - start))])
        elif command == "round_trip":
            latencies = []
            for _ in range(n):
                began = time.perf_counter()
                job = queue.enqueue(noop, PAYLOAD)
                if job.latest_result(timeout=30) is None:
                    raise SystemExit(f"job {job.id} did not finish within 30 s")
                latencies.append((time.perf_counter() - began) * 1000)
            reply["latencies_ms"] = latencies
        else:
            raise SystemExit(f"unknown command {command!r}")
        reply["elapsed_s"] = time.perf_counter() - started
        print(json.dumps(reply), flush=True)


def worker(url: str) -> None:
    Worker([QUEUE], connection=Redis.from_url(url)).work(logging_level="WARNING")


if __name__ == "__main__":
    {"driver": driver, "worker": worker}[sys.argv[2]](sys.argv[1])
