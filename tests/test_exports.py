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
    assert len(classes) == 19
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


def test_error_groups_a_caller_catches() -> None:
    assert issubclass(coordinator.QueueNotFoundError, coordinator.NotFoundError)
    assert issubclass(coordinator.JobNotFoundError, coordinator.NotFoundError)
    assert issubclass(coordinator.WorkerNotFoundError, coordinator.NotFoundError)
    assert issubclass(coordinator.InvalidNameError, coordinator.InvalidArgumentError)
    assert issubclass(coordinator.InvalidJobDataError, coordinator.InvalidArgumentError)
    assert issubclass(coordinator.InvalidArgumentError, ValueError)
    assert issubclass(coordinator.WaitTimeoutError, TimeoutError)  # callers catching the builtin keep working
    assert not issubclass(coordinator.InvalidArgumentError, coordinator.ConfigurationError)
    tree = errors.__doc__ or ""
    for cls in (value for value in vars(errors).values() if inspect.isclass(value) and issubclass(value, Exception)):
        assert cls.__name__ in tree, f"{cls.__name__} missing from the tree in errors.py's docstring"


def test_every_public_facade_member_has_a_docstring() -> None:
    undocumented = [name for name, value in inspect.getmembers(coordinator.JobQueueCoordinator)
                    if not name.startswith("_") and (callable(value) or isinstance(value, property))
                    and not (value.__doc__ or "").strip()]
    assert undocumented == []
    assert "job_id" in (coordinator.JobQueueCoordinator.enqueue_job.__doc__ or "")
