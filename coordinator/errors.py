"""The coordinator's exceptions: one tree, so callers can catch them all.

    CoordinatorError
    ├── ConfigurationError        bad settings, URL, password, TLS or Celery configuration
    ├── RedisUnavailableError     Redis cannot be reached, or did not answer within the timeout
    ├── NotFoundError             something named by the caller does not exist
    │   ├── QueueNotFoundError    a queue that was never created
    │   ├── JobNotFoundError      an unknown job id
    │   └── WorkerNotFoundError   an unknown managed worker id
    ├── InvalidArgumentError      a bad argument to a call (also a ValueError)
    │   ├── InvalidJobDataError   data that is not plain JSON or is too large
    │   └── InvalidNameError      a queue name, job id or prefix outside the safe charset
    ├── WaitTimeoutError          `wait_for_job` ran out of time (also a TimeoutError)
    ├── JobTimeoutError           an async processor's job ran past its `timeout` (also a TimeoutError)
    ├── WorkerStartError          a managed worker did not start consuming in time
    ├── FlowError                 a flow, DAG edge set or batch that cannot be written
    │   ├── DependencyNotFoundError  depends_on names a job that does not exist (also a NotFoundError)
    │   └── DependencyCycleError     depends_on would make a cycle
    ├── UnrecoverableError        raised by a processor: fail the job now, no retry
    ├── JobCancelledError         raised in a processor whose job was cancelled (raise_if_cancelled)
    ├── GroupFullError            an enqueue would take a group past its max_size (nothing written)
    └── JobTimeoutError           an attempt ran past its job's ``timeout``

Invalid option values raise `pydantic.ValidationError`, which names the field.
"""

from __future__ import annotations


class CoordinatorError(Exception):
    """Base of every error the coordinator raises on purpose."""


class ConfigurationError(CoordinatorError):
    """The coordinator cannot run with the given settings; the message names the setting."""


class RedisUnavailableError(CoordinatorError):
    """Redis could not be reached or did not answer within ``socket_timeout_s``; nothing is
    known to be written (an enqueue with a ``job_id`` can be repeated safely)."""


class NotFoundError(CoordinatorError):
    """A queue, job or managed worker the caller named does not exist."""


class InvalidArgumentError(CoordinatorError, ValueError):
    """An argument of a call is wrong (a negative count, an unknown event name, a processor that
    cannot be imported by a worker); the message names the argument. Nothing was written."""


class WaitTimeoutError(CoordinatorError, TimeoutError):
    """`wait_for_job` gave up before the job reached a final state; the job goes on. Also a
    builtin `TimeoutError`, so callers written against that keep working."""


class QueueNotFoundError(NotFoundError):
    """The queue was never created with `create_queue` (or was deleted)."""

    def __init__(self, queue: str) -> None:
        super().__init__(f"queue {queue!r} does not exist; create it with create_queue()")
        self.queue = queue


class JobNotFoundError(NotFoundError):
    """No job with this id exists in the queue."""

    def __init__(self, queue: str, job_id: str) -> None:
        super().__init__(f"job {job_id!r} not found in queue {queue!r}")
        self.queue = queue
        self.job_id = job_id


class InvalidJobDataError(InvalidArgumentError):
    """Job data (or a result, progress value or log line) is not plain JSON or is too large."""


class InvalidNameError(InvalidArgumentError):
    """A queue name, job id, schedule key or prefix that could reach other keys; inside an
    options model pydantic reports it as a ValidationError naming the field."""


class WorkerNotFoundError(NotFoundError):
    """No managed worker with this id is known to this coordinator."""

    def __init__(self, worker_id: str) -> None:
        super().__init__(f"worker {worker_id!r} not found")
        self.worker_id = worker_id


class WorkerStartError(CoordinatorError):
    """A managed worker process exited or did not consume within the start timeout."""


class UnrecoverableError(CoordinatorError):
    """Raised inside a processor to fail the job at once, without retries (BullMQ's name)."""


class FlowError(CoordinatorError):
    """A flow, a ``depends_on`` edge set or a batch that cannot be written; nothing was written."""


class DependencyNotFoundError(FlowError, NotFoundError):
    """``depends_on`` names a job that does not exist."""

    def __init__(self, queue: str, job_id: str) -> None:
        super().__init__(f"depends_on: no job {job_id!r} in queue {queue!r}")
        self.queue = queue
        self.job_id = job_id


class DependencyCycleError(FlowError):
    """``depends_on`` would make a cycle (a job depending on itself, directly or through others)."""


class JobCancelledError(CoordinatorError):
    """The running attempt was asked to stop: its job was cancelled (or it lost the job to a
    stalled-job recovery). Raised by `Job.raise_if_cancelled` and, after the grace period, in
    a processor's thread that did not stop; the job is already ``cancelled``."""

    def __init__(self, reason: str = "cancelled") -> None:
        super().__init__(reason)
        self.reason = reason


class JobTimeoutError(CoordinatorError):
    """An attempt ran past its job's ``timeout``: the attempt failed (retried or failed as the
    job's options say), and this is raised in the processor's thread to stop it."""


class GroupFullError(CoordinatorError):
    """An enqueue would put more waiting jobs in a group than its ``max_size`` allows
    (`GroupConfig`); nothing of the call was written."""

    def __init__(self, queue: str, group: str) -> None:
        super().__init__(f"group {group!r} of queue {queue!r} is full (its max_size); nothing was enqueued")
        self.queue = queue
        self.group = group
