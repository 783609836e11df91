"""`run_demo`: the photo-processing system end to end, on a Redis found or started, cleaned up after."""

from __future__ import annotations

import contextlib
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import redis
from rich.console import Console

from coordinator import CoordinatorError, JobQueueCoordinator, QueueCounts, WorkerStatus
from coordinator.demo import workload
from coordinator.demo.cleanup import interrupts_deferred, remove_demo_data, remove_tree, signals_as_interrupt
from coordinator.demo.images import PHOTO_SIZE, QUICK_PHOTO_SIZE
from coordinator.demo.progress import LiveView
from coordinator.demo.redis_server import DemoRedis, find_or_start_redis
from coordinator.demo.summary import DemoSummary, read_summary, render_summary
from coordinator.settings import redact_url, settings_from_env

#: Photos uploaded by a full run, and by ``--quick``; each gets a thumbnail and a metadata job.
DEFAULT_PHOTOS = 24
QUICK_PHOTOS = 4
#: Runs of the recurring cleanup the demo waits for.
RECURRING_RUNS, QUICK_RECURRING_RUNS = 3, 2
POLL_INTERVAL_S = 0.25


def run_demo(redis_url: str | None = None, jobs: int = DEFAULT_PHOTOS, *, quick: bool = False,
             recurring: bool = True, timeout_s: float = 180.0, prefix: str | None = None,
             keep: bool = False, console: Console | None = None) -> DemoSummary:
    """Run the photo-processing demo and return its summary, read from the registry.

    ``jobs`` photos are uploaded (each gets a thumbnail and a metadata job, plus the special jobs);
    ``quick`` caps that for tests. Raises `NoRedisError` when no Redis is reachable and none can be
    started. ``keep`` leaves the demo's keys in Redis (to inspect them); everything else is removed.
    """
    console = console or Console()
    started = time.monotonic()
    photos = max(1, min(jobs, QUICK_PHOTOS) if quick else jobs)
    runs = (QUICK_RECURRING_RUNS if quick else RECURRING_RUNS) if recurring else 0
    server = find_or_start_redis(redis_url or settings_from_env().url)
    for note in server.notes:
        say(console, note)
    prefix = prefix or f"demo-{uuid.uuid4().hex[:8]}"
    layout = workload.Layout(Path(tempfile.mkdtemp(prefix="jqc-demo-")))
    coord = JobQueueCoordinator(server.url, prefix=prefix, promote_interval_ms=100)
    plan = _Plan(photos=photos, recurring_runs=runs, timeout_s=timeout_s, started=started,
                 fields={"prefix": prefix, "redis_url": redact_url(server.url), "own_redis": server.owned})
    summary = DemoSummary(finished=False, **plan.fields)
    try:
        with signals_as_interrupt():
            summary = _run(coord, console, layout, plan)
    except KeyboardInterrupt:
        say(console, "interrupted: stopping the workers and removing the demo's keys ...")
        with contextlib.suppress(Exception):
            summary = plan.summary(coord, finished=False, interrupted=True)
        summary.interrupted = True
    finally:
        with interrupts_deferred("still cleaning up: the demo stops once its workers and keys are gone"):
            _clean_up(coord, server, layout, plan.schedules, keep, console, keep_logs=not summary.finished)
    render_summary(console, summary)
    return summary


@dataclass
class _Plan:
    """One run's sizes and timings, and the fields every summary of it carries."""

    photos: int
    recurring_runs: int
    timeout_s: float
    started: float
    fields: dict[str, object]
    setup_s: float = 0.0

    @property
    def schedules(self) -> list[tuple[str, str]]:
        return [(workload.CLEANUP, workload.CLEANUP_KEY)] if self.recurring_runs else []

    @property
    def photo_size(self) -> tuple[int, int]:
        return QUICK_PHOTO_SIZE if self.photos <= QUICK_PHOTOS else PHOTO_SIZE

    def summary(self, coord: JobQueueCoordinator, **fields: object) -> DemoSummary:
        """The summary as the registry has it now."""
        return read_summary(coord, list(workload.QUEUES), self.schedules, setup_s=self.setup_s,
                            wall_s=time.monotonic() - self.started, **self.fields, **fields)


def _run(coord: JobQueueCoordinator, console: Console, layout: workload.Layout, plan: _Plan) -> DemoSummary:
    say(console, f"prefix {coord.settings.prefix}: creating queues {', '.join(workload.QUEUES)}; "
                  "starting one worker pool per queue ...")
    workload.create_queues(coord)
    workload.start_workers(coord, on_started=lambda worker: say(console, _describe(worker)))
    plan.setup_s = time.monotonic() - plan.started
    width, height = plan.photo_size
    say(console, f"{plan.photos} photos of {width}x{height}: a backfill of {max(1, plan.photos // 3)} enqueued "
                 "in bulk now, the rest uploaded live while the workers run ...")
    work = workload.enqueue_mix(coord, layout, plan.photos, plan.recurring_runs, plan.photo_size)
    uploader = workload.Uploader(coord, layout, work.live_uploads, plan.photo_size)
    uploader.start()
    try:
        finished = _watch(coord, console, work, uploader, plan.timeout_s)
    finally:
        uploader.stop()
    notes = [] if finished else [f"timed out after {plan.timeout_s:.0f} s with jobs not finished"]
    return plan.summary(coord, finished=finished, notes=notes)


def _watch(coord: JobQueueCoordinator, console: Console, work: workload.Workload, uploader: workload.Uploader,
           timeout_s: float) -> bool:
    """Show progress until every expected job reached a final state (True) or the timeout (False)."""
    expected = {queue: work.expected(queue) for queue in workload.QUEUES}
    deadline = time.monotonic() + timeout_s
    with LiveView(console, expected, uploads=len(uploader.seeds)) as view:
        while True:
            if uploader.error is not None:
                raise uploader.error
            statuses = {queue: coord.get_queue_status(queue) for queue in workload.QUEUES}
            view.update(statuses, coord.get_all_worker_status(), uploaded=uploader.done)
            settled = all(_settled(statuses[queue].counts, expected[queue]) for queue in workload.QUEUES)
            if settled or time.monotonic() > deadline:
                view.finish(statuses)
                return settled
            time.sleep(POLL_INTERVAL_S)


def _settled(counts: QueueCounts, expected: int) -> bool:
    """The queue ran all it was expected to, and holds nothing that is still to run."""
    final = counts.completed + counts.failed + counts.cancelled
    return final >= expected and counts.waiting + counts.active + counts.delayed == 0


def say(console: Console, text: str) -> None:
    """Print a plain line: no highlighting, no hard wrapping (logs and pipes stay greppable)."""
    console.print(text, highlight=False, soft_wrap=True)


def _describe(worker: WorkerStatus) -> str:
    pool = (f"autoscale {worker.autoscale[1]}-{worker.autoscale[0]}" if worker.autoscale
            else f"concurrency {worker.concurrency}")
    return f"worker {worker.id} consuming {worker.queue}: pid {worker.pid}, prefork {pool}, log {worker.log_file}"


def _clean_up(coord: JobQueueCoordinator, server: DemoRedis, layout: workload.Layout,
              schedules: list[tuple[str, str]], keep: bool, console: Console, keep_logs: bool) -> None:
    """Stop the workers (warm), delete the demo's keys, stop a throwaway Redis, remove the files;
    each step runs even if one before it failed."""
    try:
        coord.shutdown(timeout=10)
    except Exception as exc:  # Redis gone: the worker processes were still stopped first
        say(console, f"shutting down the workers: {exc}")
    if not keep:
        try:
            remove_demo_data(coord, list(workload.QUEUES), schedules)
        except (CoordinatorError, redis.RedisError, OSError) as exc:
            say(console, f"could not remove the demo's keys (prefix {coord.settings.prefix}): {exc}")
    if keep_logs:
        say(console, f"worker logs kept in {coord.worker_log_dir}")
    else:
        remove_tree(coord.worker_log_dir)
    if server.owned:
        server.stop()
        say(console, f"stopped the throwaway redis-server (pid {server.pid})")
    remove_tree(layout.root)
