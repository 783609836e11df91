"""Repeating a step while Redis does not answer (paused, restarting, a dropped connection), for
steps that must not be left half done: a worker's claim, a batch's seal."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from coordinator.errors import RedisUnavailableError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Pause between two tries.
RETRY_S = 0.2


def while_redis_away(call: Callable[[], T], patience_s: float, what: str, *what_args: object) -> T:
    """``call()``, repeated while it raises `RedisUnavailableError`, for up to ``patience_s``
    seconds; then that error is raised. ``what`` and ``what_args`` name the step in the warning
    logged for each repeat (a %-format, built only then)."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return call()
        except RedisUnavailableError as exc:
            if time.monotonic() > deadline:
                raise
            log.warning(what + " repeated: %s", *what_args, exc)
            time.sleep(RETRY_S)
