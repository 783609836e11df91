"""Batches: independent jobs tracked together, with an ``on_complete`` and an ``on_success``
callback job, each released exactly once (Sidekiq Pro's batches on the flow engine).

A batch is a waiter (`records.batch_ref`) with the pseudo-member ``@seal`` pending until its
``with`` block exits, so it cannot complete while jobs are still being added. A member is
counted in the batch before it is enqueued, so none finishes uncounted; a running member may add
jobs to its batch (`job.batch`) because it is itself still pending then. The callbacks are jobs
in waiting_children from the start, waiting for the batch: on_complete is released when every
member finished; on_success when every member succeeded, else it is cancelled.
"""

from __future__ import annotations

import uuid
from types import TracebackType
from typing import TYPE_CHECKING, Any

from coordinator.dedup import refuse_in_flow
from coordinator.errors import FlowError
from coordinator.flows import records as rec
from coordinator.flows.models import BatchStatus, FlowJob
from coordinator.models import Job, JobOptions
from coordinator.patience import while_redis_away
from coordinator.registry import NewJob
from coordinator.registry.codec import from_ms
from coordinator.registry.registry import now_ms

if TYPE_CHECKING:
    from coordinator.flows.producer import FlowProducer

#: How long a batch's seal waits out Redis being away before it raises.
SEAL_PATIENCE_S = 60.0


class Batch:
    """An open batch: add jobs with `enqueue_job`; sealed when its ``with`` block exits."""

    def __init__(self, producer: FlowProducer, batch_id: str) -> None:
        self._producer = producer
        self.id = batch_id

    def enqueue_job(self, queue: str, data: Any, options: JobOptions | None = None, *,
                    name: str | None = None, **option_fields: Any) -> Job:
        """Add a job to the batch (counted first, then enqueued)."""
        producer = self._producer
        opts = producer.jobs.resolve_options(queue, options, option_fields)
        refuse_in_flow(opts, "batch")
        job_id = opts.job_id or str(uuid.uuid4())
        self._add_member(rec.job_ref(queue, job_id))
        job = producer.jobs.enqueue_job(queue, data, opts.model_copy(update={"job_id": job_id}), name=name)
        if producer.flows.depend(queue, [job_id], rec.batch_ref(self.id), rec.BATCH_POLICY) == [2]:
            producer.handoff.drain_job(queue, job_id)
        return job

    def batch(self, on_complete: FlowJob | None = None, on_success: FlowJob | None = None) -> Batch:
        """A batch nested in this one: it counts here as one member, succeeded if all of its own did."""
        child_id = str(uuid.uuid4())
        self._add_member(rec.batch_ref(child_id))
        return open_batch(self._producer, child_id, on_complete, on_success, parent=self.id)

    def status(self) -> BatchStatus:
        """The batch's progress now."""
        return read_batch(self._producer, self.id)

    def seal(self) -> None:
        """No more jobs from the opener: the batch completes when its members have finished."""
        self._producer.handoff.settle_batch(self.id, rec.SEAL, "completed", "")

    def _add_member(self, ref: str) -> None:
        if not self._producer.flows.add_to_batch(self.id, [ref]):
            raise FlowError(f"batch {self.id} is done: no job can be added")

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        # An unsealed batch never completes and its callbacks wait for ever: the seal waits out
        # Redis being away (the block itself may have ended on that) before it gives up.
        while_redis_away(self.seal, SEAL_PATIENCE_S, "seal of batch %s", self.id)


def open_batch(producer: FlowProducer, batch_id: str, on_complete: FlowJob | None, on_success: FlowJob | None,
               parent: str = "") -> Batch:
    """Write a new batch and its callback jobs (waiting for it)."""
    refs = []
    for callback in (on_complete, on_success):
        if callback is not None and callback.children:
            raise FlowError("batch callbacks are single jobs: give no children")
    now = now_ms()
    news: list[tuple[str, NewJob] | None] = []
    for callback in (on_complete, on_success):
        if callback is None:
            news.append(None)
            continue
        opts = producer.jobs.resolve_options(callback.queue, callback.options, {})
        refuse_in_flow(opts, "batch callback")
        news.append((callback.queue, producer.jobs.new_job(callback.queue, callback.data, callback.name, opts, now)))
    for item in news:
        refs.append(rec.job_ref(item[0], item[1].id) if item else "")
    producer.flows.open_batch(batch_id, refs[0], refs[1], parent)
    for item in news:
        if item is not None and not producer.flows.add_waiter(item[0], item[1], [rec.batch_ref(batch_id)]):
            raise FlowError(f"batch callback {item[1].id!r} exists already")
    return Batch(producer, batch_id)


def read_batch(producer: FlowProducer, batch_id: str) -> BatchStatus:
    meta, pending, failures, _ = producer.flows.batch_fields(batch_id)
    if not meta:
        raise FlowError(f"batch {batch_id}: no such batch")
    return BatchStatus(
        id=batch_id, total=int(meta.get(rec.TOTAL, 0)), pending=pending,
        succeeded=int(meta.get(rec.SUCCEEDED, 0)), failed=int(meta.get(rec.FAILED, 0)),
        sealed=meta.get(rec.SEALED) == "1", done=meta.get(rec.DONE) == "1", failures=failures,
        on_complete=meta.get(rec.ON_COMPLETE) or None, on_success=meta.get(rec.ON_SUCCESS) or None,
        parent=meta.get(rec.PARENT) or None, created_at=from_ms(meta.get(rec.CREATED)),
    )


def batch_of(producer: FlowProducer, queue: str, job_id: str) -> Batch | None:
    """The batch a job belongs to, or None."""
    _, _, _, waiters = producer.flows.job_flow_fields(queue, job_id)
    for waiter in waiters:
        if rec.is_batch_ref(waiter):
            return Batch(producer, waiter[len(rec.BATCH_PREFIX):])
    return None


def cancel_batch(producer: FlowProducer, batch_id: str) -> int:
    """Cancel the batch's members that have not started, and its callbacks; returns how many jobs."""
    meta, _, _, members = producer.flows.batch_fields(batch_id)
    if not meta:
        raise FlowError(f"batch {batch_id}: no such batch")
    cancelled = 0
    for ref in [meta.get(rec.ON_COMPLETE, ""), meta.get(rec.ON_SUCCESS, ""), *members]:
        if not ref:
            continue
        if rec.is_batch_ref(ref):
            cancelled += cancel_batch(producer, ref[len(rec.BATCH_PREFIX):])
            continue
        queue, job_id = rec.split_job_ref(ref)
        state = producer.flows.states([(queue, job_id)])[0]
        if state in ("waiting", "delayed", "waiting_children") and producer.registry.cancel(queue, job_id):
            cancelled += 1
    return cancelled
