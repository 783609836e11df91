"""The hand-off: a finished job's outcome, written to its queue's flow box in the same script
that finished it, is applied to each of its waiters (parent job, dependent job, batch) by a
script on the waiter's own slot, then removed.

Applying is idempotent (a dependency counts only while it is pending on the waiter), so a
hand-off applied twice changes nothing: after a crash, the workers' sweep applies what is left
(`sweep`), and the worker that finished the job applies it at once (`drain_job`). A waiter that
does not exist yet (a flow written bottom-up) keeps its hand-offs in the box until it does,
for `records.HANDOFF_KEEP_MS` at most.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from coordinator.errors import CoordinatorError
from coordinator.flows import records as rec
from coordinator.registry.flows import FlowRegistry
from coordinator.registry.registry import now_ms

log = logging.getLogger(__name__)

#: The sweep leaves younger hand-offs to the process that wrote them.
SWEEP_AGE_MS = 2_000


class HandOff:
    """Applies flow box entries to their waiters."""

    def __init__(self, flows: FlowRegistry) -> None:
        self.flows = flows

    def apply_written(self, queue: str, field: str, entry: str) -> None:
        """Apply the hand-off a script just wrote and returned (the registry's ``on_handoff``).
        The move that wrote it is done: if applying fails now, the sweep applies it later."""
        try:
            self.apply(queue, field, json.loads(entry))
        except CoordinatorError:
            log.warning("flow hand-off %s of queue %s left to the sweep", field, queue, exc_info=True)

    def drain_job(self, queue: str, job_id: str) -> None:
        """Apply the hand-offs a job's finish (or registration) wrote."""
        for field, entry in self.flows.handoffs_of(queue, job_id):
            self.apply(queue, field, entry)

    def sweep(self, queue: str, age_ms: int = SWEEP_AGE_MS) -> int:
        """Apply the queue's hand-offs older than ``age_ms``; returns how many were removed."""
        done = 0
        for field, entry in list(self.flows.handoffs_older_than(queue, age_ms)):
            done += self.apply(queue, field, entry)
        return done

    def apply(self, queue: str, field: str, entry: dict[str, Any]) -> bool:
        """Apply one entry to each of its waiters; remove it unless a waiter does not exist yet."""
        child = rec.job_ref(queue, entry[rec.ENTRY_JOB])
        outcome, value = entry[rec.ENTRY_OUTCOME], entry[rec.ENTRY_VALUE]
        waiters = entry[rec.ENTRY_WAITERS]
        complete = True
        for waiter, policy in zip(waiters[0::2], waiters[1::2]):
            if rec.is_batch_ref(waiter):
                self.settle_batch(waiter[len(rec.BATCH_PREFIX):], child, outcome, value)
            elif not self.settle_job(waiter, child, outcome, value, policy):
                complete = False
        expired = now_ms() - entry[rec.ENTRY_TIME] > rec.HANDOFF_KEEP_MS
        if complete or expired:
            if not complete:
                log.warning("flow hand-off of %s dropped: its waiter never appeared", child)
            self.flows.ack(queue, field)
        return complete or expired

    def settle_job(self, waiter: str, child: str, outcome: str, value: str, policy: str) -> bool:
        """Apply one dependency to a waiting job; False if the waiter does not exist."""
        queue, job_id = rec.split_job_ref(waiter)
        state, handed, left = self.flows.settle(queue, job_id, [(child, outcome, value, policy)])
        if state == "gone":
            return False
        if handed:
            self.drain_job(queue, job_id)
        if left:
            self.flows.release_holds(sorted(self.flows.children_of([(queue, job_id)])[0]))
        return True

    def settle_batch(self, batch_id: str, member: str, outcome: str, value: str) -> None:
        """Apply one member (or the seal) to a batch; when it is done, release its callbacks and
        count it in its parent batch (again on a replay: both are idempotent)."""
        reply = self.flows.settle_batch(batch_id, [(member, outcome, value)])
        if reply[0] != "done":
            return
        failed, on_complete, on_success, parent = int(reply[1]), reply[2], reply[3], reply[4]
        self.flows.release_holds(self.flows.take_batch_members(batch_id))  # retention may trim them now
        ref = rec.batch_ref(batch_id)
        summary = json.dumps({"batch": batch_id, "failed": failed})
        if on_complete:
            self.settle_job(on_complete, ref, "completed", summary, "fail")
        if on_success:
            if failed:
                self.settle_job(on_success, ref, "failed", f"{failed} job(s) of the batch failed", "skip")
            else:
                self.settle_job(on_success, ref, "completed", summary, "fail")
        if parent:
            self.settle_batch(parent, ref, "failed" if failed else "completed",
                              f"{failed} job(s) of the batch failed" if failed else summary)
