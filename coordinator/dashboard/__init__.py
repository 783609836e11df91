"""The dashboard: queues, jobs, workers, recurring jobs and flows in the browser, with actions.

``coordinator dashboard`` serves it; ``create_app(coord)`` returns the ASGI app to mount in a
Starlette, FastAPI or Django (ASGI) project. Needs the ``dashboard`` extra
(``pip install job-queue-coordinator[dashboard]``). See docs/dashboard.md.
"""

from __future__ import annotations

try:
    from coordinator.dashboard.app import create_app
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    from coordinator.errors import ConfigurationError

    raise ConfigurationError(
        f"the dashboard needs the 'dashboard' extra: pip install 'job-queue-coordinator[dashboard]' ({exc})"
    ) from exc

__all__ = ["create_app"]
