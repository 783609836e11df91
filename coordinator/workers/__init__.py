"""WorkerManager: managed `celery worker` subprocesses per queue."""

from coordinator.workers.manager import WorkerManager

__all__ = ["WorkerManager"]
