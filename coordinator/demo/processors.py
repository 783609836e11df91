"""The demo's processors: real image work with Pillow. Module-level, so worker processes import them."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from coordinator import Job, UnrecoverableError
from coordinator.demo.images import TAG_DATETIME_ORIGINAL, TAG_EXIF_IFD, TAG_MAKE, TAG_MODEL

#: A tiny offline "reverse geocoder": the nearest of these places names a photo's location.
PLACES = {
    "Lisbon": (38.72, -9.14), "Berlin": (52.52, 13.40), "Nairobi": (-1.29, 36.82),
    "Kyoto": (35.01, 135.77), "Montreal": (45.50, -73.57), "Santiago": (-33.45, -70.67),
}


def open_photo(path: Path) -> Image.Image:
    """Load an upload fully; a file that is not an image fails the job at once (no retry helps)."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise UnrecoverableError(f"{path.name} is not a readable image ({type(exc).__name__})") from exc


def make_thumbnails(job: Job) -> dict[str, Any]:
    """thumbnails queue: resize one photo to each requested size and save them as JPEGs."""
    source = Path(job.data["photo"])
    out_dir = Path(job.data["out_dir"])
    sizes = list(job.data.get("sizes", [128, 512]))
    image = open_photo(source).convert("RGB")
    out_dir.mkdir(parents=True, exist_ok=True)
    made = []
    for done, size in enumerate(sizes, start=1):
        thumb = image.copy()
        thumb.thumbnail((size, size), Image.Resampling.LANCZOS)
        target = out_dir / f"{source.stem}-{size}.jpg"
        thumb.save(target, "JPEG", quality=82)
        made.append({"size": size, "path": str(target), "bytes": target.stat().st_size})
        job.update_progress(round(100 * done / len(sizes)))
    job.log(f"{len(made)} thumbnails of {source.name}")
    return {"photo": source.name, "thumbnails": made}


def extract_metadata(job: Job) -> dict[str, Any]:
    """metadata queue: EXIF camera and time, dimensions, SHA-256 and a perceptual hash;
    jobs named ``geotag`` also name the nearest place (from a "geocoder" that may be down)."""
    source = Path(job.data["photo"])
    raw = source.read_bytes()
    image = open_photo(source)
    exif = image.getexif()
    meta: dict[str, Any] = {
        "photo": source.name,
        "width": image.width,
        "height": image.height,
        "camera": " ".join(str(exif.get(tag, "")) for tag in (TAG_MAKE, TAG_MODEL)).strip() or None,
        "taken_at": exif.get_ifd(TAG_EXIF_IFD).get(TAG_DATETIME_ORIGINAL),
        "sha256": hashlib.sha256(raw).hexdigest(),
        "average_hash": average_hash(image),
    }
    job.update_progress(60)
    if job.name == "geotag":
        meta["place"] = reverse_geocode(job, tuple(job.data["gps"]))
    job.log(f"metadata of {source.name}: {meta['camera']}, {meta['width']}x{meta['height']}")
    return meta


def reverse_geocode(job: Job, gps: tuple[float, float]) -> str:
    """The nearest known place. Simulates an outage of the first ``geocoder_fails`` attempts,
    so the job fails, waits out its back-off and recovers on retry."""
    if job.attempts_made <= int(job.data.get("geocoder_fails", 0)):
        raise ConnectionError(f"reverse geocoder unavailable (simulated outage, attempt {job.attempts_made})")
    lat, lon = gps
    return min(PLACES, key=lambda name: (PLACES[name][0] - lat) ** 2 + (PLACES[name][1] - lon) ** 2)


def average_hash(image: Image.Image) -> str:
    """64-bit average hash (aHash) as 16 hex digits: near-identical photos get near-identical hashes."""
    small = image.convert("L").resize((8, 8), Image.Resampling.LANCZOS)
    pixels = list(small.getdata())
    mean = sum(pixels) / len(pixels)
    bits = "".join("1" if pixel >= mean else "0" for pixel in pixels)
    return f"{int(bits, 2):016x}"


def purge_stale(job: Job) -> dict[str, Any]:
    """cleanup queue (recurring): delete temp files older than ``max_age_s`` from ``dir``."""
    directory = Path(job.data["dir"])
    cutoff = time.time() - int(job.data.get("max_age_s", 3600))
    removed = 0
    kept = 0
    for path in sorted(directory.glob("*.tmp")):
        if path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            removed += 1
        else:
            kept += 1
    job.log(f"purged {removed} stale files from {directory.name}, kept {kept}")
    return {"removed": removed, "kept": kept}
