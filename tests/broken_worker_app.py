"""A processor module that imports in the test process but not in a managed worker subprocess
(`python -m coordinator.runtime.worker_main`), so the worker exits before it consumes."""

from __future__ import annotations

import sys

if sys.argv and sys.argv[0].endswith("worker_main.py"):
    raise ImportError("this module refuses to load in a worker")


def never(job: object) -> None:
    """Never runs: its worker cannot start."""
