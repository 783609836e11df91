"""Entry point of a managed worker subprocess: rebuild the coordinator, then run `celery worker`."""

from __future__ import annotations

import json
import os
from functools import partial
from typing import TYPE_CHECKING, Any

from celery import signals

from coordinator.runtime.async_runner import is_async
from coordinator.runtime.owner_watch import watch_owner
from coordinator.workers.spec import SPEC_ENV, WorkerSpec, load

if TYPE_CHECKING:
    from coordinator.facade import JobQueueCoordinator


def celery_argv(spec: WorkerSpec, celery_queue: str, async_processor: bool = False) -> list[str]:
    """The `celery worker` command line; an async processor's worker is one solo process whose
    ``concurrency`` is the number of coroutines on its event loop (`runtime.async_runner`)."""
    options = spec.options
    argv = [
        "worker", "-Q", celery_queue, "-n", spec.node_name, "-P", "solo" if async_processor else options.pool,
        "-l", spec.settings.log_level, "--without-gossip", "--without-mingle",
        "--prefetch-multiplier", str(options.prefetch_multiplier),
    ]
    if spec.settings.task_events:
        argv += ["-E"]
    if options.embed_beat:
        argv += ["-B"]  # the app's beat_scheduler: the coordinator's redbeat scheduler
    if async_processor:
        pass
    elif options.autoscale and options.pool == "prefork":
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
    handler = coord.processors.get(spec.queue)
    async_processor = is_async(handler)
    if async_processor:
        if coord.adopted is not None:  # tasks routed here since the processor was registered
            coord.adopted.check_async_queue(spec.queue)
        coord.async_runner(spec.options.concurrency or spec.settings.worker_concurrency)
        if coord.settings.broker_is_redis:
            signals.worker_ready.connect(partial(_consume_on_loop, coord, spec, handler), weak=False)
    elif coord.adopted is not None:
        coord.adopted.serve(spec.queue, handler)
    coord.app.worker_main(celery_argv(spec, coord.celery_queue(spec.queue), async_processor))


def _consume_on_loop(coord: JobQueueCoordinator, spec: WorkerSpec, handler: Any, sender: Any = None,
                     **_: Any) -> None:
    """Once the worker is ready: its event loop takes the queue's messages itself, and Celery's
    consumer of that queue stops (`runtime.async_runner`); pausing the worker still works (the
    loop's consumer reads the same pause flag)."""
    if sender is not None:
        sender.cancel_task_queue(coord.celery_queue(spec.queue))
    coord.async_runner().consume(spec.queue, handler, spec.node_name)


if __name__ == "__main__":
    main()
