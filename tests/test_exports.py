"""The public surface: every name of API.md importable from `coordinator`, `__all__` complete."""

from __future__ import annotations

import inspect

import coordinator
from coordinator import errors

API_NAMES = {
    "JobQueueCoordinator", "Job", "JobState", "JobOptions", "Backoff", "RateLimit", "QueueConfig", "BulkJob",
    "ScheduleOptions", "RecurringJobOptions", "RecurringJob", "QueueInfo", "QueueStatus", "WorkerOptions",
    "ManagedWorker", "WorkerStatus", "ScalingResult", "Health", "Event", "CoordinatorError",
    "QueueNotFoundError", "JobNotFoundError", "WorkerNotFoundError", "WorkerStartError", "InvalidJobDataError",
    "ConfigurationError", "UnrecoverableError",
    "FlowJob", "FlowNode", "BatchStatus",  # Additions: flows and batches
}


def test_all_is_complete_and_sorted() -> None:
    public = {name for name, value in vars(coordinator).items()
              if not name.startswith("_") and not inspect.ismodule(value)}
    assert set(coordinator.__all__) == public
    assert coordinator.__all__ == sorted(coordinator.__all__)
    assert API_NAMES <= set(coordinator.__all__)


def test_every_error_is_a_coordinator_error() -> None:
    classes = [value for value in vars(errors).values() if inspect.isclass(value) and issubclass(value, Exception)]
    assert len(classes) == 13
    assert all(issubclass(cls, coordinator.CoordinatorError) for cls in classes)


def test_facade_has_every_method_of_the_contract() -> None:
    methods = {
        "create_queue", "get_queue", "get_queue_names", "get_queue_status", "pause_queue", "resume_queue",
        "delete_queue", "enqueue_job", "enqueue_bulk", "schedule_job", "get_job", "get_jobs", "get_failed_jobs",
        "retry_job", "cancel_job", "update_job_priority", "promote_job", "wait_for_job", "register_worker",
        "close_worker", "get_worker", "get_workers_by_queue", "get_all_worker_status", "shutdown", "processor",
        "celery_queue", "from_env",
        "add_flow", "get_flow", "batch", "get_batch",  # Additions: flows and batches
    }
    missing = {m for m in methods if not callable(getattr(coordinator.JobQueueCoordinator, m, None))}
    assert missing == set()
