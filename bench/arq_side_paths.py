"""Where `bench.asyncio_io` finds arq's own environment (arq pins redis-py below 6)."""

from __future__ import annotations

from pathlib import Path

#: arq's database on the dedicated Redis (as `bench.arq_side.DB`, which this side cannot import).
DB = 3
VENV = Path(__file__).parent.parent / ".venv-arq"


def python() -> str | None:
    """The arq environment's interpreter, or None when it was not made."""
    path = VENV / "bin" / "python"
    return str(path) if path.exists() else None
