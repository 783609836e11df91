"""The soak's history, kept outside Redis: one JSON object per line in a file every process
appends to (``O_APPEND``, one ``write`` per line, so lines of concurrent writers never mix).

Three kinds of line, each with wall-clock seconds (``time.time()``, one clock: every process runs
on this machine):

- ``call``: a client call of the driver and what it returned (``op``, ``t0``/``t1``, ``ok`` or
  ``error``, and per op the job ids it made or the bool it answered);
- ``start`` / ``end``: an execution a processor saw (``x`` execution id, ``job``, ``q``, ``tok``
  dispatch token, ``att`` attempts at the claim, ``claimed`` the claim time, ``t``);
- ``fault``: a fault the injector caused (``kind``, ``t0``/``t1``, ``detail``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: The environment variable naming the history file, for processors in worker processes.
HISTORY_ENV = "JQC_SOAK_HISTORY"


class History:
    """Appends lines to the history file; safe to share between processes (each opens its own)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, kind: str, /, **fields: Any) -> None:
        """Append one line of ``kind`` (fields must be JSON)."""
        fields.setdefault("t", time.time())
        line = json.dumps({"k": kind, **fields}, separators=(",", ":"), default=str) + "\n"
        os.write(self._fd, line.encode())

    def close(self) -> None:
        """Close the file (the lines are already written)."""
        os.close(self._fd)


def read_history(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Every line of a history file, in file order (a torn last line of a killed writer is skipped)."""
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue
