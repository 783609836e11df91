"""The adopted-task subject: a team's Celery app adopted by the coordinator, its task sent with
``.delay()`` to a coordinator queue; the same trivial work as the coordinator's ``noop`` job.

The worker subprocess imports ``bench.adopted:app`` (the port comes from ``BENCH_REDIS_PORT``).
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, group

from bench.subjects import BULK_CHUNK, CONCURRENCY, POOL, QUEUE, CoordinatorSubject
from coordinator import JobQueueCoordinator

app = Celery("bench-adopted", broker=f"redis://127.0.0.1:{os.environ.get('BENCH_REDIS_PORT', '6379')}/0",
             set_as_current=False)
app.conf.update(task_serializer="json", accept_content=["json"], task_ignore_result=True)


@app.task(name="bench.adopted_noop")
def adopted_noop(data: Any) -> None:
    """The trivial task: take the payload, do nothing."""
    return None


class AdoptedSubject(CoordinatorSubject):
    """``adopted``: the app above adopted (prefix ``bench-adopted``); `.delay()` enqueues a job."""

    name = "adopted"

    def __init__(self, url: str, **settings: Any) -> None:
        self.coord = JobQueueCoordinator(url, prefix="bench-adopted", app=app, **settings)
        self.coord.create_queue(QUEUE)
        self.celery_queue = self.coord.celery_queue(QUEUE)
        self._worker_id: str | None = None
        self.worker_pid = 0

    def enqueue_one(self, data: Any) -> None:
        adopted_noop.apply_async((data,), queue=self.celery_queue)

    def enqueue_many(self, items: list[Any]) -> None:
        for start in range(0, len(items), BULK_CHUNK):
            chunk = items[start : start + BULK_CHUNK]
            group(adopted_noop.s(d).set(queue=self.celery_queue) for d in chunk).apply_async()

    def start_worker(self) -> None:
        status = self.coord.register_worker(QUEUE, pool=POOL, concurrency=CONCURRENCY)
        self._worker_id = status.id
        self.worker_pid = status.pid

    def round_trip(self, data: Any) -> None:
        result = adopted_noop.apply_async((data,), queue=self.celery_queue)
        self.coord.wait_for_job(QUEUE, result.id, timeout=30)


def caller_cost(url: str = "redis://127.0.0.1:6379/0", calls: int = 2000) -> dict[str, float]:
    """Caller CPU (ms) per ``enqueue_job`` and per adopted ``apply_async``, the same 100-byte payload."""
    import time
    import uuid

    from bench.run import PAYLOAD

    app.conf.broker_url = url
    coord = JobQueueCoordinator(url, prefix=f"bench-cost-{uuid.uuid4().hex[:6]}", app=app)
    try:
        coord.create_queue(QUEUE)
        celery_queue = coord.celery_queue(QUEUE)
        figures = {}
        for label, call in (("enqueue_job", lambda: coord.enqueue_job(QUEUE, PAYLOAD)),
                            ("delay", lambda: adopted_noop.apply_async((PAYLOAD,), queue=celery_queue))):
            call()
            started = time.process_time()
            for _ in range(calls):
                call()
            figures[label] = (time.process_time() - started) * 1000 / calls
        return figures
    finally:
        coord.delete_queue(QUEUE)
        coord.shutdown()


if __name__ == "__main__":
    for name, ms in caller_cost().items():
        print(f"{name}: {ms:.3f} ms caller CPU per call")
