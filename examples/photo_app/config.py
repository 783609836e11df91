"""The app's configuration, from the environment (the coordinator reads its own: REDIS_URL, ...)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class AppConfig:
    storage_dir: Path
    """Where uploads and thumbnails live (a volume shared by the API and the workers)."""
    thumbnail_sizes: tuple[int, ...]
    autoscale: tuple[int, int]
    """(max, min) worker processes per queue."""
    cleanup_every_ms: int
    api_host: str
    api_port: int

    @classmethod
    def from_env(cls) -> AppConfig:
        """PHOTO_STORAGE_DIR, THUMBNAIL_SIZES, WORKER_AUTOSCALE, CLEANUP_EVERY_MS, API_HOST, API_PORT."""
        env = os.environ
        high, low = (int(n) for n in env.get("WORKER_AUTOSCALE", "4,1").split(","))
        return cls(
            storage_dir=Path(env.get("PHOTO_STORAGE_DIR", "/tmp/photo-app")),
            thumbnail_sizes=tuple(int(n) for n in env.get("THUMBNAIL_SIZES", "128,512").split(",")),
            autoscale=(high, low),
            cleanup_every_ms=int(env.get("CLEANUP_EVERY_MS", str(15 * 60 * 1000))),
            api_host=env.get("API_HOST", "127.0.0.1"),
            api_port=int(env.get("API_PORT", "8000")),
        )

    @property
    def uploads(self) -> Path:
        return self.storage_dir / "uploads"

    @property
    def thumbnails(self) -> Path:
        return self.storage_dir / "thumbnails"
