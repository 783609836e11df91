"""One running attempt of a job as its worker process sees it: cancel flag, deadline, interruption.

The lock keeper (`runtime.locks`) checks every running attempt's lock every `cancel_check_ms`;
an attempt whose lock is gone no longer owns its job (cancelled, or recovered as stalled) and is
flagged here. The processor sees the flag (`Job.is_cancelled`, `Job.raise_if_cancelled`); an
attempt that does not stop is interrupted after the grace period:

- callbacks registered with `Attempt.add_cancel_callback` (async processors cancel their
  coroutine there) are called at once, and replace the interruption below;
- a prefork pool child: Celery's revoke with terminate (the pool ends the child);
- a thread (threads or solo pool): the exception is raised in that thread at its next Python
  instruction (`PyThreadState_SetAsyncExc`); a thread blocked in C code is not interrupted,
  and its late finish is fenced off by the job's token.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from billiard.process import current_process

from coordinator.dispatch import task_id
from coordinator.errors import JobCancelledError

CancelCallback = Callable[[str], object]


def in_prefork_child() -> bool:
    """True in a Celery prefork pool child (billiard names them ForkPoolWorker-N)."""
    return current_process().name.startswith("ForkPoolWorker")


def raise_in_thread(thread_id: int, exc_type: type[BaseException]) -> bool:
    """Schedule ``exc_type`` in another thread of this process; False if no such thread."""
    done = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc_type))
    if done > 1:  # more than one thread state touched: undo (documented misuse guard)
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None)
        return False
    return done == 1


@dataclass(eq=False)
class Attempt:
    """One dispatch of a job running in this process (identity: queue, job id, token)."""

    queue: str
    job_id: str
    token: int
    timeout_s: float | None = None
    on_timeout: Callable[[], object] | None = None
    """Records the attempt as failed with a timeout; called by the keeper once, past ``timeout_s``."""
    worker: str = ""
    leases: tuple[tuple[str, str], ...] = ()
    """(lease set, member) of the concurrency slots the attempt may hold, renewed with its lock."""
    thread_id: int = field(default_factory=threading.get_ident)
    started: float = field(default_factory=time.monotonic)
    cancel_reason: str | None = None
    """Why the attempt should stop; set once (cancelled, lost its lock, timed out)."""
    cancelled_at: float = 0.0
    timed_out: bool = False
    interrupted: bool = False
    reported: bool = False
    outcome_claimed: bool = False
    in_handler: bool = True
    """True while the processor runs; an interruption is only raised inside it."""
    callbacks: list[CancelCallback] = field(default_factory=list)
    mutex: threading.Lock = field(default_factory=threading.Lock)

    @property
    def task_id(self) -> str:
        """The Celery task id of this dispatch (``job_id.token``)."""
        return task_id(self.job_id, self.token)

    def is_cancelled(self) -> bool:
        """True once the attempt was asked to stop."""
        return self.cancel_reason is not None

    def raise_if_cancelled(self) -> None:
        """Raise `JobCancelledError` with the reason once the attempt was asked to stop."""
        reason = self.cancel_reason
        if reason is not None:
            raise JobCancelledError(reason)

    def add_cancel_callback(self, callback: CancelCallback) -> None:
        """Call ``callback(reason)`` (from the keeper's thread) when the attempt is asked to stop;
        at once if it already was. An attempt with callbacks is never interrupted otherwise:
        the callback is the interruption (an async processor cancels its coroutine)."""
        with self.mutex:
            self.callbacks.append(callback)
            reason = self.cancel_reason
        if reason is not None:
            callback(reason)

    def request_stop(self, reason: str) -> bool:
        """Flag the attempt (the first reason wins); True if this call flagged it."""
        with self.mutex:
            if self.cancel_reason is not None:
                return False
            self.cancel_reason = reason
            self.cancelled_at = time.monotonic()
            callbacks = list(self.callbacks)
        for callback in callbacks:
            callback(reason)
        return True

    def claim_outcome(self) -> bool:
        """True for the first caller only: the one that records the attempt's outcome (the
        processor's return or error, or the keeper's timeout), so it is never recorded twice."""
        with self.mutex:
            if self.outcome_claimed:
                return False
            self.outcome_claimed = True
            return True

    def leave_handler(self) -> None:
        """The processor returned or raised: no interruption may be raised from now on."""
        with self.mutex:
            self.in_handler = False

    def interrupt(self, exc_type: type[BaseException], terminate: Callable[[Attempt], object] | None) -> bool:
        """Stop the processor if it still runs: ``terminate`` in a prefork child when given,
        else raise ``exc_type`` in its thread. False if there was nothing to do."""
        with self.mutex:
            if self.callbacks or not self.in_handler or self.interrupted:
                return False
            self.interrupted = True
            if terminate is not None and in_prefork_child():
                terminate(self)
                return True
            return raise_in_thread(self.thread_id, exc_type)
