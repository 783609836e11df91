"""The demo's photo-processing system: its queues, workers and the mix of jobs it enqueues."""

from __future__ import annotations

import threading
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
    """What the demo puts in: one-off jobs per queue, the live uploads still to come, the recurring runs."""

    one_off: dict[str, int] = field(default_factory=dict)
    live_uploads: list[int] = field(default_factory=list)
    """Seeds of the photos that arrive while the demo runs (see `Uploader`)."""
    recurring_runs: int = 0

    def expected(self, queue: str) -> int:
        """Jobs the queue will have run when the demo is done."""
        return self.one_off.get(queue, 0) + (self.recurring_runs if queue == CLEANUP else 0)


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


def enqueue_mix(coord: JobQueueCoordinator, layout: Layout, photos: int, recurring_runs: int,
                photo_size: tuple[int, int] = images.PHOTO_SIZE) -> Workload:
    """Enqueue the jobs known up front: a backfill of older photos (in bulk, lowest priority), the
    delayed re-thumbnails, a flaky geotag, a poison upload, and the recurring cleanup. The other
    photos arrive as live uploads while the demo runs (`Uploader`), at the highest priority."""
    backfill = max(1, photos // 3)
    work = Workload(live_uploads=list(range(backfill, photos)))
    uploads = [images.make_photo(layout.uploads / f"IMG_{1000 + seed}.jpg", seed, photo_size)
               for seed in range(backfill)]
    broken = images.make_corrupt_upload(layout.uploads)
    images.make_stale_files(layout.scratch, count=5, age_s=7200)
    out = str(layout.thumbnails)
    coord.enqueue_bulk(THUMBNAILS, [thumbnail_job(photo, out, BACKFILL_PRIORITY) for photo in uploads])
    coord.enqueue_bulk(METADATA, [metadata_job(photo, BACKFILL_PRIORITY) for photo in uploads])
    coord.enqueue_job(METADATA, {"photo": str(uploads[0]), "gps": [38.7, -9.1], "geocoder_fails": 1},
                      name="geotag", job_id=FLAKY_JOB_ID, backoff=Backoff(type="fixed", delay=700))
    coord.enqueue_job(THUMBNAILS, {"photo": str(broken), "out_dir": out}, name="thumbnail",
                      job_id=POISON_JOB_ID, priority=NORMAL_PRIORITY)
    rethumbs = uploads[:2]
    for photo in rethumbs:
        coord.schedule_job(THUMBNAILS, "re-thumbnail", {"photo": str(photo), "out_dir": out, "sizes": [1024]},
                           delay=RETHUMB_DELAY_MS, priority=NORMAL_PRIORITY)
    work.one_off = {THUMBNAILS: photos + 1 + len(rethumbs), METADATA: photos + 1}
    if recurring_runs:
        schedule_cleanup(coord, layout, recurring_runs)
        work.recurring_runs = recurring_runs
    return work


def thumbnail_job(photo: Path, out_dir: str, priority: int) -> BulkJob:
    return BulkJob(name="thumbnail", data={"photo": str(photo), "out_dir": out_dir, "sizes": [128, 512]},
                   options=JobOptions(priority=priority))


def metadata_job(photo: Path, priority: int) -> BulkJob:
    return BulkJob(name="extract", data={"photo": str(photo)}, options=JobOptions(priority=priority))


class Uploader:
    """The API side: photos arrive one by one while the workers run; each gets a thumbnail and a
    metadata job at the highest priority, so they overtake the backfill."""

    def __init__(self, coord: JobQueueCoordinator, layout: Layout, seeds: list[int],
                 photo_size: tuple[int, int] = images.PHOTO_SIZE) -> None:
        self.coord = coord
        self.layout = layout
        self.seeds = seeds
        self.photo_size = photo_size
        self.done = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-uploads", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        out = str(self.layout.thumbnails)
        try:
            for seed in self.seeds:
                if self._stop.is_set():
                    return
                photo = images.make_photo(self.layout.uploads / f"IMG_{1000 + seed}.jpg", seed, self.photo_size)
                self.coord.enqueue_bulk(THUMBNAILS, [thumbnail_job(photo, out, PREMIUM_PRIORITY)])
                self.coord.enqueue_bulk(METADATA, [metadata_job(photo, PREMIUM_PRIORITY)])
                self.done += 1
        except Exception as exc:  # reported by the demo's watch loop
            self.error = exc


def schedule_cleanup(coord: JobQueueCoordinator, layout: Layout, runs: int) -> None:
    """The recurring job: purge stale renders every second, ``runs`` times (separable: the demo
    runs without it when started with ``--no-recurring``)."""
    coord.schedule_recurring_job(
        CLEANUP, "purge-stale", {"dir": str(layout.scratch), "max_age_s": 3600},
        every=CLEANUP_EVERY_MS, limit=runs, key=CLEANUP_KEY,
    )
