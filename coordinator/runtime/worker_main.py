"""Entry point of a managed worker subprocess: rebuild the coordinator, then run `celery worker`."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from coordinator.runtime.owner_watch import watch_owner
from coordinator.workers.spec import SPEC_ENV, WorkerSpec, load

if TYPE_CHECKING:
    from coordinator.facade import JobQueueCoordinator


def celery_argv(spec: WorkerSpec, celery_queue: str) -> list[str]:
    options = spec.options
    argv = [
        "worker", "-Q", celery_queue, "-n", spec.node_name, "-P", options.pool,
        "-l", spec.settings.log_level, "--without-gossip", "--without-mingle",
        "--prefetch-multiplier", str(options.prefetch_multiplier),
    ]
    if spec.settings.task_events:
        argv += ["-E"]
    if options.embed_beat:
        argv += ["-B"]  # the app's beat_scheduler: the coordinator's redbeat scheduler
    if options.autoscale and options.pool == "prefork":
        argv += ["--autoscale", f"{options.autoscale[0]},{options.autoscale[1]}"]
    else:
        argv += ["-c", str(options.concurrency or spec.settings.worker_concurrency)]
    return argv


def main() -> None:
    run_worker(WorkerSpec.model_validate(json.loads(os.environ.pop(SPEC_ENV))))


def run_worker(spec: WorkerSpec, coord: JobQueueCoordinator | None = None) -> None:
    """Run `celery worker` for the spec in this process (structured logs); ``coord``: reuse it."""
    from coordinator.facade import JobQueueCoordinator
    from coordinator.log_format import use_for_celery_worker

    use_for_celery_worker(spec.settings.log_level)
    if spec.owner_pid is not None:
        watch_owner(spec.owner_pid)
    if coord is None:
        app = load(spec.app) if spec.app else None
        coord = JobQueueCoordinator.from_settings(spec.settings, app=app)
    if spec.processor and spec.queue not in coord.processors:
        coord.processor(spec.queue)(load(spec.processor))
    elif coord.adopted is not None:
        coord.adopted.serve(spec.queue, coord.processors.get(spec.queue))
    coord.app.worker_main(celery_argv(spec, coord.celery_queue(spec.queue)))


if __name__ == "__main__":
    main()
