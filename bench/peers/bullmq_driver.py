"""BullMQ's Python port as a benchmark peer; runs in the peers' venv (bench/peers/setup.py).

    python bullmq_driver.py <redis url> driver   # phases on stdin, one JSON reply per line
    python bullmq_driver.py <redis url> worker   # a Worker (concurrency 2) until SIGTERM

Driver commands: ``enqueue N`` (N awaited ``add`` calls), ``bulk N`` (``addBulk`` of 5,000 jobs
per call), ``round_trip N`` (``add`` then wait for the job's ``completed`` event). Each reply holds
the wall time the library itself took, so the process start-up is outside every figure.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time

from bullmq import Queue, QueueEvents, Worker

QUEUE = "bench"
PAYLOAD = {"data": "x" * 100}
BULK_CHUNK = 5000
CONCURRENCY = 2


async def noop(job, token):  # the trivial job: take the payload, do nothing
    return None


async def worker(url: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    w = Worker(QUEUE, noop, {"connection": url, "concurrency": CONCURRENCY})
    await stop.wait()
    await w.close()


async def driver(url: str) -> None:
    queue = Queue(QUEUE, {"connection": url})
    events: QueueEvents | None = None
    waiting: dict[str, asyncio.Future] = {}
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().strip():
        command, count = line.split()
        n = int(count)
        reply: dict = {}
        started = time.perf_counter()
        if command == "enqueue":
            for _ in range(n):
                await queue.add("noop", PAYLOAD)
        elif command == "bulk":
            for start in range(0, n, BULK_CHUNK):
                await queue.addBulk([{"name": "noop", "data": PAYLOAD} for _ in range(min(BULK_CHUNK, n - start))])
        elif command == "round_trip":
            if events is None:
                events = QueueEvents(QUEUE, {"connection": url})
                events.on("completed", lambda args, _id: _resolve(waiting, args["jobId"]))
                await asyncio.sleep(0.5)  # let its XREAD start before the first job
            latencies = []
            for _ in range(n):
                began = time.perf_counter()
                job = await queue.add("noop", PAYLOAD)
                future = waiting.setdefault(job.id, loop.create_future())
                await asyncio.wait_for(future, 30)
                latencies.append((time.perf_counter() - began) * 1000)
                waiting.pop(job.id, None)
            reply["latencies_ms"] = latencies
        else:
            raise SystemExit(f"unknown command {command!r}")
        reply["elapsed_s"] = time.perf_counter() - started
        print(json.dumps(reply), flush=True)
    if events is not None:
        await events.close()
    await queue.close()


def _resolve(waiting: dict[str, asyncio.Future], job_id: str) -> None:
    """Resolve the wait for a job (or leave it resolved if the event came before the wait)."""
    future = waiting.setdefault(job_id, asyncio.get_running_loop().create_future())
    if not future.done():
        future.set_result(None)


if __name__ == "__main__":
    asyncio.run({"driver": driver, "worker": worker}[sys.argv[2]](sys.argv[1]))
