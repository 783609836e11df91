"""The examples/ folder and the environment its programs run with in tests."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.env import REDIS_URL

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example_env(prefix: str, **extra: str) -> dict[str, str]:
    """The environment of an example's process: this run's Redis and the test's key prefix."""
    return {**os.environ, "REDIS_URL": REDIS_URL, "JQC_PREFIX": prefix, "PYTHONUNBUFFERED": "1", **extra}
