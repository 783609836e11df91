"""The shapes of the flow records in Redis, named once (the Lua scripts write the same names).

Refs: a job is ``<queue>:<job id>`` (queue names hold no ``:``), a batch is ``@b:<batch id>``
(``@`` starts no queue name). A waiting job's ``pending`` and ``children`` sets and its
``values`` / ``failures`` hashes hold refs; a job's ``dependents`` hash maps waiter refs to the
failure policy of that edge.

Hand-off entry (a JSON object in the queue's ``flowbox`` hash, field ``<job id>:<token>``, or
``<job id>:d:<waiter ref>`` when written at registration): ``c`` job id, ``o`` outcome
(completed | failed | cancelled), ``v`` result JSON or reason, ``t`` time (ms), ``w`` flat list
of waiter ref, policy, waiter ref, policy, ...

Batch meta hash: ``total``, ``succeeded``, ``failed``, ``sealed`` ("1"), ``done`` ("1"),
``on_complete`` / ``on_success`` (job refs), ``parent`` (batch id), ``created`` (ms), ``released``
("1" once the holds of its members were given back, after it was done).
"""

from __future__ import annotations

from typing import Literal

FailurePolicy = Literal["fail", "ignore", "remove", "continue"]
#: The failure policies of a dependency edge (BullMQ's four): fail the waiter; go on, keeping the
#: failure visible; go on, forgetting the dependency; start the waiter at once, failure visible.
POLICIES: tuple[str, ...] = ("fail", "ignore", "remove", "continue")
#: Policies of edges the coordinator makes itself: skip (cancel the waiter on a failure: a batch's
#: on_success, a Celery link), on_error (start it on a failure, cancel it on success: link_error).
INTERNAL_POLICIES: tuple[str, ...] = ("skip", "on_error")
#: Policy of a batch member's edge to its batch: counted, never failing the batch itself.
BATCH_POLICY = "batch"

BATCH_PREFIX = "@b:"
#: The pseudo-member that keeps a batch open until its ``with`` block exits.
SEAL = "@seal"

# hand-off entry fields
ENTRY_JOB, ENTRY_OUTCOME, ENTRY_VALUE, ENTRY_TIME, ENTRY_WAITERS = "c", "o", "v", "t", "w"

# batch meta fields
TOTAL, SUCCEEDED, FAILED, SEALED, DONE = "total", "succeeded", "failed", "sealed", "done"
ON_COMPLETE, ON_SUCCESS, PARENT, CREATED = "on_complete", "on_success", "parent", "created"
RELEASED = "released"

#: A hand-off whose waiter does not exist yet (a flow being added bottom-up) is kept this long.
HANDOFF_KEEP_MS = 600_000


def job_ref(queue: str, job_id: str) -> str:
    return f"{queue}:{job_id}"


def batch_ref(batch_id: str) -> str:
    return f"{BATCH_PREFIX}{batch_id}"


def is_batch_ref(ref: str) -> bool:
    return ref.startswith(BATCH_PREFIX)


def split_job_ref(ref: str) -> tuple[str, str]:
    """``(queue, job id)`` of a job ref."""
    queue, _, job_id = ref.partition(":")
    return queue, job_id
