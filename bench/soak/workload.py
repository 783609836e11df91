"""The soak's producer: a seeded mix of client calls, paced to a target rate of jobs, each call
and what it returned written to the history.

Every job gets an id from the driver (``<kind>-<n>``), so a call that raised while Redis was away
can be repeated safely (enqueue by id adds nothing the second time) until it answers. Each call
line names the jobs it made and the outcome each one's kind promises (``jobs``); a cancel names
what it answered (``returned``); flows and batches name the waiter and its children.
"""

from __future__ import annotations

import heapq
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from bench.soak import tasks
from bench.soak.history import History
from coordinator import (
    Backoff,
    BulkJob,
    CoordinatorError,
    FlowJob,
    JobOptions,
    JobQueueCoordinator,
    RedisUnavailableError,
)

#: How long one call is repeated while Redis does not answer (a restart takes a few seconds).
CALL_PATIENCE_S = 60.0
#: Errors that mean "Redis did not answer": the call is repeated with the same job ids.
TRANSIENT = (RedisUnavailableError, redis.RedisError, ConnectionError, OSError, TimeoutError)

#: Operation -> weight of the mix (features whose API is not on this branch are left out; see
#: `Workload.plug`).
MIX: dict[str, int] = {
    "plain": 30, "delayed": 6, "retry": 8, "exhausted": 3, "fatal": 5, "cancel": 8, "flow": 5, "batch": 4,
    "adopted": 10, "bulk": 3,
}


@dataclass
class Workload:
    """Drives the calls of one soak run on queues ``main`` (processor) and ``adopted`` (Celery task)."""

    coord: JobQueueCoordinator
    history: History
    rng: random.Random
    main: str = "main"
    adopted: str = "adopted"
    mix: dict[str, int] = field(default_factory=lambda: dict(MIX))
    extra: dict[str, Callable[[Workload], int]] = field(default_factory=dict)
    sent: int = 0
    _seq: int = 0
    _cancels: list[tuple[float, str, str]] = field(default_factory=list)

    def plug(self, name: str, weight: int, operation: Callable[[Workload], int]) -> None:
        """Add an operation to the mix (groups, limits, dedup: see run.py)."""
        self.mix[name] = weight
        self.extra[name] = operation

    def new_id(self, kind: str) -> str:
        self._seq += 1
        return f"{kind}-{self._seq}"

    # ------------------------------------------------------------------ calls, recorded

    def call(self, op: str, fn: Callable[[], Any], record: Callable[[Any], dict[str, Any]], **fields: Any) -> Any:
        """Run ``fn`` until it answers (repeating it while Redis is away, up to a minute); write one
        line per attempt: ``ok`` with ``record(answer)``, or the error."""
        deadline = time.monotonic() + CALL_PATIENCE_S
        raised = False
        while True:
            t0 = time.time()
            try:
                answer = fn()
            except TRANSIENT as exc:
                raised = True
                self.history.write("call", op=op, t0=t0, t1=time.time(), ok=False, error=repr(exc)[:200], **fields)
                if time.monotonic() > deadline:
                    return None
                time.sleep(0.2)
                continue
            except CoordinatorError as exc:
                if raised and "exists already" in str(exc):  # an earlier attempt did write it
                    self.history.write("call", op=op, t0=t0, t1=time.time(), ok=True, repeated=True,
                                       **fields)
                    return None
                raise
            self.history.write("call", op=op, t0=t0, t1=time.time(), ok=True, **record(answer), **fields)
            return answer

    def enqueue(self, queue: str, data: Any, expect: str | None, kind: str, **options: Any) -> str:
        job_id = self.new_id(kind)
        self.call("enqueue", lambda: self.coord.enqueue_job(queue, data, job_id=job_id, **options),
                  lambda job: {"jobs": {job.id: expect}, "id": job.id}, q=queue, kind=kind,
                  **({"dedup": options["dedup"].model_dump()} if "dedup" in options else {}))
        return job_id

    # ------------------------------------------------------------------ the mix

    def step(self) -> int:
        """One operation of the mix, and any cancel that is due; returns the jobs it added."""
        self.cancel_due()
        name = self.rng.choices(list(self.mix), weights=list(self.mix.values()))[0]
        added = self.extra[name](self) if name in self.extra else getattr(self, f"op_{name}")()
        self.sent += added
        return added

    def ms(self) -> int:
        return self.rng.randint(10, 80)

    def op_plain(self) -> int:
        self.enqueue(self.main, {"do": "ok", "ms": self.ms()}, "completed", "plain", priority=self.rng.randint(1, 10))
        return 1

    def op_delayed(self) -> int:
        self.enqueue(self.main, {"do": "ok", "ms": self.ms()}, "completed", "delayed",
                     delay=self.rng.randint(100, 3000))
        return 1

    def op_retry(self) -> int:
        self.enqueue(self.main, {"do": "retry", "ms": self.ms(), "fail_times": self.rng.randint(1, 2)}, "completed",
                     "retry", max_retries=4, backoff=Backoff(type="fixed", delay=100))
        return 1

    def op_exhausted(self) -> int:
        self.enqueue(self.main, {"do": "retry", "ms": self.ms(), "fail_times": 1000}, "failed", "exhausted",
                     max_retries=1, backoff=Backoff(type="fixed", delay=100))
        return 1

    def op_fatal(self) -> int:
        self.enqueue(self.main, {"do": "fatal", "ms": self.ms()}, "failed", "fatal")
        return 1

    def op_cancel(self) -> int:
        """A long job or a delayed one, cancelled a moment later (whatever it is doing then)."""
        if self.rng.random() < 0.5:
            job_id = self.enqueue(self.main, {"do": "ok", "ms": self.rng.randint(300, 1500)}, "completed", "cancel")
        else:
            job_id = self.enqueue(self.main, {"do": "ok", "ms": self.ms()}, "completed", "cancel",
                                  delay=self.rng.randint(200, 1500))
        heapq.heappush(self._cancels, (time.monotonic() + self.rng.uniform(0, 1.2), self.main, job_id))
        return 1

    def cancel_due(self) -> None:
        while self._cancels and self._cancels[0][0] <= time.monotonic():
            _, queue, job_id = heapq.heappop(self._cancels)
            self.cancel(queue, job_id)

    def cancel(self, queue: str, job_id: str) -> None:
        self.call("cancel", lambda: self.coord.cancel_job(queue, job_id), lambda ok: {"returned": ok},
                  q=queue, job=job_id)

    def op_flow(self) -> int:
        """A parent and 2-3 children; sometimes a failing child, under ``fail`` (the parent then
        fails and never runs) or ``ignore`` (it runs anyway)."""
        children: list[tuple[str, str, str]] = []  # (id, expect, policy)
        for _ in range(self.rng.randint(2, 3)):
            children.append((self.new_id("child"), "completed", "fail"))
        if self.rng.random() < 0.3:
            children.append((self.new_id("child"), "failed", self.rng.choice(["fail", "ignore"])))
        parent = self.new_id("parent")
        must_fail = any(expect == "failed" and policy == "fail" for _, expect, policy in children)
        flow = FlowJob(queue=self.main, name="parent", data={"do": "parent", "ms": self.ms()},
                       options=JobOptions(job_id=parent), children=[
            FlowJob(queue=self.main, data={"do": "ok" if expect == "completed" else "fatal", "ms": self.ms()},
                    options=JobOptions(job_id=child), on_failure=policy)
            for child, expect, policy in children])
        jobs = {parent: "failed" if must_fail else "completed", **{c: e for c, e, _ in children}}
        self.call("add_flow", lambda: self.coord.add_flow(flow), lambda _: {"jobs": jobs}, waiter=parent,
                  children=[c for c, _, _ in children], must_fail=must_fail)
        return len(jobs)

    def op_batch(self) -> int:
        """2-3 jobs in a batch with an on_complete callback (it runs once, after all of them)."""
        members = [self.new_id("member") for _ in range(self.rng.randint(2, 3))]
        callback: list[str] = []

        def run_batch() -> list[str]:
            with self.coord.batch(on_complete=FlowJob(queue=self.main, name="batch-done",
                                                      data={"do": "ok", "ms": 10})) as batch:
                for member in members:
                    batch.enqueue_job(self.main, {"do": "ok", "ms": self.ms()}, job_id=member)
            ref = batch.status().on_complete or ""
            callback[:] = [ref.split(":", 1)[1]]
            return callback

        def record(_: Any) -> dict[str, Any]:
            return {"jobs": {**dict.fromkeys(members, "completed"), callback[0]: "completed"},
                    "waiter": callback[0], "children": members}

        self.call("batch", run_batch, record)
        return len(members) + 1

    def op_adopted(self) -> int:
        """An adopted Celery task sent with ``apply_async`` (its id is the job id)."""
        job_id = self.new_id("celery")
        fail = self.rng.random() < 0.15
        self.call("apply_async", lambda: tasks.adopted.apply_async(kwargs={"ms": self.ms(), "fail": fail},
                                                                   task_id=job_id),
                  lambda result: {"jobs": {result.id: "failed" if fail else "completed"}}, q=self.adopted)
        return 1

    def op_bulk(self) -> int:
        ids = [self.new_id("bulk") for _ in range(5)]
        self.call("enqueue_bulk", lambda: self.coord.enqueue_bulk(self.main, [
            BulkJob(data={"do": "ok", "ms": self.ms()}, options=JobOptions(job_id=job_id)) for job_id in ids]),
            lambda jobs: {"jobs": dict.fromkeys((job.id for job in jobs), "completed")}, q=self.main)
        return len(ids)


def pace(workload: Workload, rate_per_s: float, seconds: float, stop: Callable[[], bool]) -> float:
    """Run the mix at ``rate_per_s`` jobs a second for ``seconds``; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < seconds and not stop():
        workload.step()
        ahead = started + workload.sent / rate_per_s - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    return time.monotonic() - started
