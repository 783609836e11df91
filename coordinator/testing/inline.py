"""Running a queue's waiting jobs in the calling process, through the workers' own claim and
finish scripts (`runtime/task.py`), for unit tests that need no worker process."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from coordinator.errors import InvalidArgumentError
from coordinator.models import Job, JobState
from coordinator.runtime.task import JobRunner, Processor

if TYPE_CHECKING:
    from coordinator.facade import JobQueueCoordinator
    from coordinator.registry.registry import Registry

FINAL_STATES = (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)


def run_jobs(coord: JobQueueCoordinator, queue: str, limit: int | None = None, *,
             processor: Processor | None = None) -> list[Job]:
    """Run the waiting jobs of ``queue`` here, in priority order, and return them finished.

    Each job is claimed with the same script a worker uses (token fencing, pause, rate limit,
    ``active`` event), handed to the processor (``processor``, else the one registered with
    ``@coord.processor(queue)``), and finished with the same script (result or failure, retries,
    events, retention). A failed attempt with retries left is run again at once, skipping its
    back-off, until the job completes or fails for good. Jobs that are delayed (``delay``,
    ``run_at``) or held back (paused queue, rate limit) are left alone. ``limit`` caps how many
    jobs are taken. Returns each job as it stands after its last attempt, in the order run;
    a job removed when it finished (``remove_on_complete`` / ``remove_on_fail=True``) is returned
    as it was claimed, with ``state`` set to its outcome.
    """
    handler = processor or coord.processors.get(queue)
    if handler is None:
        raise InvalidArgumentError(f"processor: no processor given or registered for queue {queue!r}")
    coord.get_queue(queue)  # QueueNotFoundError for an unknown queue
    worker_id = f"run_jobs@{socket.gethostname()}"
    runner = coord.job_runner  # the runner (and so the registry) the coordinator hands its workers
    finished: list[Job] = []
    tried: set[str] = set()
    while limit is None or len(finished) < limit:
        job_id = _next_waiting(coord, queue, tried)
        if job_id is None:
            break
        tried.add(job_id)
        job = _run_to_end(coord, runner, handler, queue, job_id, worker_id)
        if job is not None:
            finished.append(job)
    return finished


def _next_waiting(coord: JobQueueCoordinator, queue: str, skip: set[str]) -> str | None:
    """The waiting job a worker would get next (highest priority, then oldest), not yet tried here."""
    waiting = [job for job in coord.get_jobs(queue, [JobState.WAITING], asc=True) if job.id not in skip]
    if not waiting:
        return None
    return min(waiting, key=lambda job: job.options.priority).id  # min() keeps the oldest of equals


def _run_to_end(coord: JobQueueCoordinator, runner: JobRunner, handler: Processor, queue: str, job_id: str,
                worker_id: str) -> Job | None:
    """Attempts of one job until it is final; None if it was not ours to run (held or gone)."""
    registry = runner.registry
    while True:
        state, token = registry.job_state_token(queue, job_id)
        if state != JobState.WAITING.value or token is None:
            return None
        claimed = coord.get_job(queue, job_id)
        before = registry.last_event_id(queue)
        runner.execute(handler, queue, job_id, int(token), worker_id)
        after = coord.get_job(queue, job_id)
        if after is None and claimed is not None:  # removed on finish: its event says how it ended
            return claimed.model_copy(update={"state": _final_event(registry, queue, job_id, before)})
        if after is None:
            return None
        if after.state is JobState.DELAYED and claimed is not None and after.attempts_made > claimed.attempts_made:
            coord.promote_job(queue, job_id)  # a retry: skip its back-off
            continue
        return after if after.state in FINAL_STATES else None


def _final_event(registry: Registry, queue: str, job_id: str, after_id: str) -> JobState:
    """The final state a removed job reached, from its events since ``after_id``."""
    outcome = JobState.COMPLETED
    for _, fields in registry.read_events(queue, after_id, block_ms=None, count=10_000):
        if fields.get("job_id") == job_id and fields.get("event") in {s.value for s in FINAL_STATES}:
            outcome = JobState(fields["event"])
    return outcome
