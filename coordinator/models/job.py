"""The job snapshot, its states, and the events a state change emits."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from coordinator.models.options import JobOptions

if TYPE_CHECKING:
    from coordinator.flows.batch import Batch
    from coordinator.flows.producer import FlowProducer
    from coordinator.runtime.control import Attempt


class JobWriter(Protocol):
    """What a running job writes through: the registry (sync processors) or, for an ``async def``
    processor, a writer whose calls return awaitables (`runtime.async_runner.AsyncJobWriter`)."""

    def update_progress(self, queue: str, job_id: str, token: int | None, progress: Any) -> Any: ...

    def add_log(self, queue: str, job_id: str, line: str) -> Any: ...


class JobState(str, Enum):
    """Where a job is in its life; each state has one index per queue in the registry."""

    WAITING = "waiting"
    WAITING_CHILDREN = "waiting_children"
    """Waits for its children, its ``depends_on`` jobs or its batch (`coordinator.flows`)."""
    DELAYED = "delayed"
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)


class EventName(str, Enum):
    """Every event a queue's stream carries (`Event.event`); `coord.on` takes these names or ``"*"``.

    Job events are appended by the registry's scripts in the same step as the state move
    (``registry/lua/*.lua`` write the same strings); ``paused`` / ``resumed`` by `pause_queue` /
    `resume_queue`; ``worker`` by the supervisor of managed workers, with ``data["action"]``
    one of `WorkerAction`.
    """

    WAITING = "waiting"
    ACTIVE = "active"
    PROGRESS = "progress"
    COMPLETED = "completed"
    FAILED = "failed"
    RETRYING = "retrying"
    DELAYED = "delayed"
    STALLED = "stalled"
    CANCELLED = "cancelled"
    WAITING_CHILDREN = "waiting_children"
    """A job now waits for its children / dependencies / batch (created, or re-armed)."""
    CHILD_COMPLETED = "child_completed"
    """On a waiting job: one of its dependencies completed (``data["child"]`` = ``queue:id``)."""
    CHILD_FAILED = "child_failed"
    """On a waiting job: a dependency failed or was cancelled (``child``, ``reason``, ``policy``)."""
    PAUSED = "paused"
    RESUMED = "resumed"
    GROUP_PAUSED = "group_paused"
    """A group of the queue was paused (``data["group"]``); ``group_resumed`` when resumed."""
    GROUP_RESUMED = "group_resumed"
    LIMITED = "limited"
    """A job over a concurrency cap (the queue's or a named limiter's) was parked (``data["limit"]``)."""
    WORKER = "worker"
    DEDUPLICATED = "deduplicated"
    """On the job that stands for a dedup key: an enqueue with that key added nothing
    (``data["key"]``, ``data["mode"]``; ``data["due"]``: its new start, for a debounce)."""


class WorkerAction(str, Enum):
    """``data["action"]`` of a ``worker`` event."""

    CRASHED = "crashed"
    RESTARTED = "restarted"
    GAVE_UP = "gave_up"
    UNRESPONSIVE_JOB = "unresponsive_job"
    """A job's attempt still ran well after it was cancelled or timed out (its thread could not
    be interrupted); its outcome will be discarded."""


class Job(BaseModel):
    """A snapshot of one job as the registry held it when it was read.

    Inside a processor, `update_progress` and `log` write to the registry for the running attempt.
    """

    model_config = ConfigDict(frozen=False)

    id: str
    queue: str
    name: str
    data: Any = None
    options: JobOptions = JobOptions()
    state: JobState
    attempts_made: int = 0
    stalled_count: int = 0
    progress: Any = 0
    result: Any = None
    failed_reason: str | None = None
    stacktrace: list[str] = Field(default_factory=list)  # a factory: no deepcopy of a default per job
    logs: list[str] = Field(default_factory=list)
    created_at: datetime
    processed_on: datetime | None = None
    finished_on: datetime | None = None
    worker_id: str | None = None
    trace_id: str | None = None
    schedule_key: str | None = None
    celery_task_id: str | None = None
    """The Celery task id of the job's current dispatch (``<id>.<token>``; an adopted task's
    own id): Flower shows the task under it."""
    deduplicated: bool = False
    """True on the `Job` an enqueue returned when its dedup key was held: this is the job that
    stands (an earlier one), and the call added nothing (docs/deduplication.md)."""

    _registry: JobWriter | None = PrivateAttr(None)
    _token: int | None = PrivateAttr(None)
    _attempt: Attempt | None = PrivateAttr(None)
    _flows: FlowProducer | None = PrivateAttr(None)

    def update_progress(self, progress: Any) -> Any:
        """Record progress (0..100, or any JSON value) of the running attempt; emits ``progress``.
        In an ``async def`` processor it returns an awaitable of the write (``await`` it, or not)."""
        written = self._bound().update_progress(self.queue, self.id, self._token, progress)
        self.progress = progress
        return None if isinstance(written, bool) else written

    def log(self, line: str) -> Any:
        """Append a line to the job's log (awaitable in an ``async def`` processor, as `update_progress`)."""
        written = self._bound().add_log(self.queue, self.id, line)
        self.logs.append(line)
        return written

    def is_cancelled(self) -> bool:
        """Inside a processor: True once the running attempt was asked to stop (its job was
        cancelled, or it ran past its timeout); seen within a second on any host, no round trip.
        Outside: whether the snapshot's state is ``cancelled``."""
        if self._attempt is None:
            return self.state is JobState.CANCELLED
        return self._attempt.is_cancelled()

    def raise_if_cancelled(self) -> None:
        """Raise `JobCancelledError` (with the reason) if `is_cancelled`; call it in a loop."""
        if self._attempt is not None:
            self._attempt.raise_if_cancelled()
        elif self.state is JobState.CANCELLED:
            from coordinator.errors import JobCancelledError

            raise JobCancelledError(self.failed_reason or "cancelled")

    def children_values(self) -> dict[str, Any]:
        """Results of the children / dependencies that completed: ``{"<queue>:<job id>": result}``."""
        return self._flow_api().children_values(self.queue, self.id)

    def children_failures(self) -> dict[str, str]:
        """Reasons of the failed children the job goes on without (policies ignore, continue)."""
        return self._flow_api().children_failures(self.queue, self.id)

    @property
    def batch(self) -> Batch | None:
        """The batch this job belongs to (a running job may add jobs to it), or None."""
        from coordinator.flows.batch import batch_of

        return batch_of(self._flow_api(), self.queue, self.id)

    def _flow_api(self) -> FlowProducer:
        if self._flows is None:
            from coordinator.errors import CoordinatorError

            raise CoordinatorError("children_values(), children_failures() and batch work inside a processor "
                                   "or on a job of coord.get_flow()")
        return self._flows

    def _bound(self) -> JobWriter:
        if self._registry is None or self._token is None:
            from coordinator.errors import CoordinatorError

            raise CoordinatorError("update_progress() and log() work only inside a processor")
        return self._registry


class Event(BaseModel):
    """One job event of a queue's stream."""

    id: str
    event: str
    queue: str
    job_id: str | None = None
    timestamp: datetime
    data: dict[str, Any] = {}
    trace_id: str | None = None
    """The job's trace id, on every event of a job that has one."""
