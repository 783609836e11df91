"""The demo's photo-processing system: its queues, workers and the mix of jobs it enqueues."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from coordinator import (
    Backoff,
    BulkJob,
    JobOptions,
    JobQueueCoordinator,
    QueueConfig,
    WorkerOptions,
    WorkerStatus,
)
from coordinator.demo import images, processors

THUMBNAILS, METADATA, CLEANUP = "thumbnails", "metadata", "cleanup"
QUEUES = (THUMBNAILS, METADATA, CLEANUP)

#: Priorities of the mix (1 is the highest): paying users' uploads first, the backfill last.
PREMIUM_PRIORITY, NORMAL_PRIORITY, BACKFILL_PRIORITY = 1, 5, 9
RETHUMB_DELAY_MS = 2500
CLEANUP_EVERY_MS = 1000
CLEANUP_KEY = "purge-stale-renders"
FLAKY_JOB_ID = "geotag-IMG_1000"
POISON_JOB_ID = "upload-IMG_BROKEN"


@dataclass
class Layout:
    """Where the demo's files live: uploads in, thumbnails out, stale renders to purge."""

    root: Path

    @property
    def uploads(self) -> Path:
        return self.root / "uploads"

    @property
    def thumbnails(self) -> Path:
        return self.root / "thumbnails"

    @property
    def scratch(self) -> Path:
        return self.root / "scratch"


@dataclass
class Workload:
    """What the demo put in: one-off jobs per queue, and the recurring schedule's expected runs."""

    one_off: dict[str, list[str]] = field(default_factory=dict)
    recurring_runs: int = 0

    def expected(self, queue: str) -> int:
        """Jobs the queue will have run when the demo is done."""
        return len(self.one_off.get(queue, [])) + (self.recurring_runs if queue == CLEANUP else 0)


def create_queues(coord: JobQueueCoordinator) -> None:
    """Three queues, each with default options that fit its work."""
    coord.create_queue(QueueConfig(
        name=THUMBNAILS,
        default_job_options=JobOptions(max_retries=2, backoff=Backoff(type="fixed", delay=500), timeout=60),
    ))
    coord.create_queue(QueueConfig(
        name=METADATA,
        default_job_options=JobOptions(max_retries=3, backoff=Backoff(type="exponential", delay=400)),
    ))
    coord.create_queue(QueueConfig(name=CLEANUP, default_job_options=JobOptions(max_retries=1)))


def start_workers(coord: JobQueueCoordinator,
                  on_started: Callable[[WorkerStatus], None] | None = None) -> None:
    """One managed pool per queue: prefork with autoscale for the image work, one process for cleanup
    (which also runs the embedded beat that fires the recurring job)."""
    pools = (
        (THUMBNAILS, processors.make_thumbnails, WorkerOptions(autoscale=(2, 1))),
        (METADATA, processors.extract_metadata, WorkerOptions(autoscale=(2, 1))),
        (CLEANUP, processors.purge_stale, WorkerOptions(concurrency=1, embed_beat=True)),
    )
    for queue, handler, options in pools:
        worker = coord.register_worker(queue, handler, options)
        if on_started is not None:
            on_started(worker)


def enqueue_mix(coord: JobQueueCoordinator, layout: Layout, photos: int, recurring_runs: int) -> Workload:
    """Generate the uploads and enqueue the realistic mix; returns what was enqueued."""
    uploads = images.make_uploads(layout.uploads, photos)
    broken = images.make_corrupt_upload(layout.uploads)
    layout.thumbnails.mkdir(parents=True, exist_ok=True)
    images.make_stale_files(layout.scratch, count=5, age_s=7200)
    work = Workload(one_off={queue: [] for queue in QUEUES})
    out = str(layout.thumbnails)

    def thumb(photo: Path, priority: int) -> BulkJob:
        return BulkJob(name="thumbnail", data={"photo": str(photo), "out_dir": out, "sizes": [128, 512]},
                       options=JobOptions(priority=priority))

    premium = max(1, photos // 4)
    batches = {
        THUMBNAILS: [thumb(p, PREMIUM_PRIORITY) for p in uploads[:premium]]
        + [thumb(p, BACKFILL_PRIORITY) for p in uploads[premium:]],
        METADATA: [BulkJob(name="extract", data={"photo": str(p)}, options=JobOptions(priority=NORMAL_PRIORITY))
                   for p in uploads],
    }
    # The backfill goes in first, so the premium uploads visibly overtake it.
    for queue in (THUMBNAILS, METADATA):
        ordered = sorted(batches[queue], key=lambda job: -(job.options.priority if job.options else 5))
        work.one_off[queue] += [job.id for job in coord.enqueue_bulk(queue, ordered)]

    flaky = coord.enqueue_job(
        METADATA, {"photo": str(uploads[0]), "gps": [38.7, -9.1], "geocoder_fails": 1},
        name="geotag", job_id=FLAKY_JOB_ID, backoff=Backoff(type="fixed", delay=700),
    )
    poison = coord.enqueue_job(
        THUMBNAILS, {"photo": str(broken), "out_dir": out}, name="thumbnail", job_id=POISON_JOB_ID,
        priority=NORMAL_PRIORITY,
    )
    work.one_off[METADATA].append(flaky.id)
    work.one_off[THUMBNAILS].append(poison.id)
    for photo in uploads[: 2 if photos > 2 else 1]:
        delayed = coord.schedule_job(THUMBNAILS, "re-thumbnail",
                                     {"photo": str(photo), "out_dir": out, "sizes": [1024]},
                                     delay=RETHUMB_DELAY_MS, priority=NORMAL_PRIORITY)
        work.one_off[THUMBNAILS].append(delayed.id)
    if recurring_runs:
        schedule_cleanup(coord, layout, recurring_runs)
        work.recurring_runs = recurring_runs
    return work


def schedule_cleanup(coord: JobQueueCoordinator, layout: Layout, runs: int) -> None:
    """The recurring job: purge stale renders every second, ``runs`` times (separable: the demo
    runs without it when started with ``--no-recurring``)."""
    coord.schedule_recurring_job(
        CLEANUP, "purge-stale", {"dir": str(layout.scratch), "max_age_s": 3600},
        every=CLEANUP_EVERY_MS, limit=runs, key=CLEANUP_KEY,
    )
