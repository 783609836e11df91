"""What the scripts' integer replies mean, in one table (BullMQ's ``finished-errors.ts``).

The write scripts that act on one job (or on a queue) reply ``1`` done, ``0`` refused (the job's
state does not allow the move, or this attempt no longer owns it: fencing by token) or ``-1``
missing. `SCRIPT_REPLIES` says, per script, what error a missing reply becomes; `interpret_reply` turns a
reply into the bool the registry returns. `lua/start.lua` replies with a status word instead
(`START_STATUSES`).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum

from coordinator.errors import CoordinatorError, FlowError, JobNotFoundError, QueueNotFoundError


class Reply(IntEnum):
    GROUP_FULL = -2
    """`lua/enqueue.lua`: ``{-2, group}``, the call would take a group past its max_size."""
    MISSING = -1
    REFUSED = 0
    DONE = 1


def _no_job(queue: str, job_id: str) -> CoordinatorError:
    return JobNotFoundError(queue, job_id)


def _no_queue(queue: str, job_id: str) -> CoordinatorError:
    return QueueNotFoundError(queue)


def _no_batch(batch_id: str, _: str) -> CoordinatorError:
    return FlowError(f"batch {batch_id}: no such batch")


#: Script name -> the error its ``-1`` reply means (None: the script never replies -1).
SCRIPT_REPLIES: dict[str, Callable[[str, str], CoordinatorError] | None] = {
    "enqueue": _no_queue,
    "cancel": _no_job,
    "retry": _no_job,
    "change_priority": _no_job,
    "finish": None,
    "progress": None,
    "flow_add_waiter": _no_queue,
    "flow_batch_add": _no_batch,
}

#: What `lua/enqueue.lua` replies per job, as the registry returns it: True added, False a job
#: with that id existed (nothing written), a str: the id of the job that stands for the job's
#: dedup key (nothing written; see `coordinator.dedup`).
Added = bool | str


def enqueue_outcome(flag: int | str) -> Added:
    """One job's entry of the `lua/enqueue.lua` reply list, as `Added`."""
    return flag if isinstance(flag, str) else flag == Reply.DONE


#: Replies of `lua/start.lua`: run it, or why this message does not run the job.
START_STATUSES = ("active", "missing", "stale", "paused", "limited", "expired", "limits", "capped")


def interpret_reply(script: str, reply: int, queue: str, job_id: str = "") -> bool:
    """True for `Reply.DONE`, False for `Reply.REFUSED`; raises the script's error for `Reply.MISSING`."""
    if reply == Reply.MISSING:
        error = SCRIPT_REPLIES[script]
        if error is None:
            raise CoordinatorError(f"script {script} replied {reply} for {queue}/{job_id}")
        raise error(queue, job_id)
    return reply == Reply.DONE
