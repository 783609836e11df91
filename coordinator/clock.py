"""Wall-clock time as the registry stores it: integer milliseconds since the epoch (UTC)."""

from __future__ import annotations

import time

#: Milliseconds in one minute: the width of a metrics bucket.
MINUTE_MS = 60_000


def now_ms() -> int:
    """The current time in ms since the epoch."""
    return int(time.time() * 1000)


def minute_of(ms: int) -> int:
    """The minute bucket (minutes since the epoch) that a time in ms falls in."""
    return ms // MINUTE_MS
