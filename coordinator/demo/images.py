"""Sample "uploads" for the demo: generated JPEG photos with EXIF, and one corrupt file."""

from __future__ import annotations

import os
import random
from datetime import datetime, timedelta
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

#: EXIF tags the demo writes and the metadata processor reads back.
TAG_MAKE, TAG_MODEL, TAG_DATETIME = 0x010F, 0x0110, 0x0132
TAG_EXIF_IFD, TAG_DATETIME_ORIGINAL = 0x8769, 0x9003
EXIF_TIME_FORMAT = "%Y:%m:%d %H:%M:%S"

CAMERAS = (("Canon", "EOS R6"), ("Nikon", "Z 6II"), ("FUJIFILM", "X-T4"), ("Apple", "iPhone 14"))
#: Size of the generated photos: a full run's, and a quick (test) run's.
PHOTO_SIZE = (2400, 1800)
QUICK_PHOTO_SIZE = (1024, 768)


def make_photo(path: Path, seed: int, size: tuple[int, int] = PHOTO_SIZE) -> Path:
    """Write a deterministic, photo-like JPEG (gradients, noise, shapes) with camera EXIF."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    width, height = size
    gradient = Image.linear_gradient("L").rotate(rng.uniform(0, 360)).resize(size)
    noise = Image.effect_noise(size, rng.uniform(20, 60))
    image = Image.merge("RGB", (gradient, noise, ImageOps.invert(gradient)))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = rng.randrange(width), rng.randrange(height)
        radius = rng.randrange(20, 160)
        colour = tuple(rng.randrange(256) for _ in range(3))
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)
    make, model = CAMERAS[seed % len(CAMERAS)]
    taken = datetime(2024, 6, 1, 9, 0) + timedelta(minutes=37 * seed)
    exif = Image.Exif()
    exif[TAG_MAKE], exif[TAG_MODEL] = make, model
    exif[TAG_DATETIME] = taken.strftime(EXIF_TIME_FORMAT)
    exif.get_ifd(TAG_EXIF_IFD)[TAG_DATETIME_ORIGINAL] = taken.strftime(EXIF_TIME_FORMAT)
    image.save(path, "JPEG", quality=88, exif=exif)
    return path


def make_corrupt_upload(directory: Path) -> Path:
    """A file that claims to be a JPEG but is not an image: the demo's poison job."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "IMG_BROKEN.jpg"
    path.write_bytes(b"\xff\xd8 this upload was cut off and is not an image " * 8)
    return path


def make_stale_files(directory: Path, count: int, age_s: int) -> list[Path]:
    """Leftover temp files, ``age_s`` old, for the recurring cleanup job to purge."""
    directory.mkdir(parents=True, exist_ok=True)
    stale = []
    for n in range(count):
        path = directory / f"render-{n}.tmp"
        path.write_bytes(b"\0" * 1024)
        old = path.stat().st_mtime - age_s
        os.utime(path, (old, old))
        stale.append(path)
    return stale
