"""The app's processors, registered with `@coord.processor`, and a process that runs their workers.

Run the workers with the CLI (one queue per process, as in docker-compose.yml):
    JQC_APP=photo_app.worker:configured coordinator worker --queue thumbnails --autoscale 4,1
or all queues as managed worker pools from one supervising process:
    python -m photo_app.worker
"""

from __future__ import annotations

import hashlib
import signal
import threading
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from coordinator import Job, JobQueueCoordinator, UnrecoverableError, WorkerOptions

from photo_app.jobs import CLEANUP, METADATA, THUMBNAILS, config, coord, setup

EXIF_MAKE, EXIF_MODEL, EXIF_IFD, EXIF_TAKEN = 0x010F, 0x0110, 0x8769, 0x9003


def _load(path: Path) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
    except UnidentifiedImageError as exc:
        raise UnrecoverableError(f"{path.name}: not an image") from exc  # retrying cannot help
    return image


@coord.processor(THUMBNAILS)
def make_thumbnails(job: Job) -> dict[str, Any]:
    """A square thumbnail per configured size, EXIF orientation applied."""
    source = Path(job.data["path"])
    image = ImageOps.exif_transpose(_load(source)).convert("RGB")
    config.thumbnails.mkdir(parents=True, exist_ok=True)
    written = []
    for size in config.thumbnail_sizes:
        target = config.thumbnails / f"{source.stem}-{size}.jpg"
        ImageOps.fit(image, (size, size)).save(target, "JPEG", quality=85)
        written.append(str(target))
    job.update_progress(100)
    return {"thumbnails": written}


@coord.processor(METADATA)
def read_metadata(job: Job) -> dict[str, Any]:
    """Dimensions, camera and capture time from EXIF, and a content hash for de-duplication."""
    source = Path(job.data["path"])
    image = _load(source)
    exif = image.getexif()
    return {
        "size": [image.width, image.height],
        "camera": f"{exif.get(EXIF_MAKE, '')} {exif.get(EXIF_MODEL, '')}".strip() or None,
        "taken_at": exif.get_ifd(EXIF_IFD).get(EXIF_TAKEN),
        "sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
    }


@coord.processor(CLEANUP)
def purge_thumbnails(job: Job) -> dict[str, int]:
    """Recurring: delete thumbnails older than ``max_age_s``."""
    cutoff = time.time() - job.data.get("max_age_s", 7 * 24 * 3600)
    removed = 0
    for path in config.thumbnails.glob("*.jpg"):
        if path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            removed += 1
    return {"removed": removed}


def configured() -> JobQueueCoordinator:
    """The coordinator for the CLI (``JQC_APP=photo_app.worker:configured``): processors registered
    (this module), queues and the recurring purge in place."""
    setup()
    return coord


def main() -> None:
    """Start a managed, autoscaled pool per queue (the purge fires from them); stop on SIGTERM/Ctrl-C."""
    setup()
    for queue in (THUMBNAILS, METADATA, CLEANUP):
        worker = coord.register_worker(queue, options=WorkerOptions(autoscale=config.autoscale))
        print(f"{queue}: worker {worker.id} (pid {worker.pid}) consuming", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    print("stopping: running jobs finish first", flush=True)
    coord.shutdown(timeout=60)


if __name__ == "__main__":
    main()
