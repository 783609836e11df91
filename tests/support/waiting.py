"""The one bounded wait of the tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: How long a test waits for a job or worker by default (the machine is shared and loaded).
WAIT_S = 30.0


def wait_until(condition: Callable[[], T], timeout: float = WAIT_S, what: str = "condition",
               interval: float = 0.05) -> T:
    """Poll ``condition`` until it returns something truthy and return that; AssertionError
    naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(interval)
