"""The service's async processor and the process that runs its managed worker.

    python -m fastapi_app.worker        # one worker process, 50 jobs at once on its event loop
"""

from __future__ import annotations

import asyncio
import hashlib
import signal
import threading

from coordinator import Job, JobQueueCoordinator, UnrecoverableError

QUEUE = "crawl"
#: Built from REDIS_URL, JQC_PREFIX, ...; building it opens no connection.
coord = JobQueueCoordinator.from_env()


@coord.processor(QUEUE)
async def crawl(job: Job) -> dict[str, object]:
    """Fetch a page (simulated: an I/O wait) and return its size and digest."""
    url = job.data["url"]
    if not url.startswith(("http://", "https://")):
        raise UnrecoverableError(f"url: {url!r} is not http(s)")  # retrying cannot help
    await job.update_progress(10)
    await asyncio.sleep(float(job.data.get("latency_s", 0.05)))  # where an httpx.AsyncClient.get would be
    body = f"<html>{url}</html>".encode()
    job.log(f"fetched {len(body)} bytes")
    return {"url": url, "bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def main() -> None:
    coord.create_queue(QUEUE)
    worker = coord.register_worker(QUEUE, concurrency=50)
    print(f"worker {worker.id} consuming {QUEUE}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    coord.shutdown(timeout=30)


if __name__ == "__main__":
    main()
