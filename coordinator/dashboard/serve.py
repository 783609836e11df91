"""``coordinator dashboard``: serve the dashboard with uvicorn (loopback unless users are set)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from coordinator.dashboard.auth import USERS_ENV, is_loopback, users_from
from coordinator.errors import ConfigurationError

if TYPE_CHECKING:
    from coordinator.facade import JobQueueCoordinator

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5556


def serve(coord: JobQueueCoordinator, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          flower_url: str | None = None) -> None:
    """Serve the dashboard until interrupted. Off loopback only with users (``JQC_DASHBOARD_USERS``)."""
    import uvicorn

    from coordinator.dashboard import create_app

    users = users_from(None)
    if not users and not is_loopback(host):
        raise ConfigurationError(
            f"--host {host}: the dashboard listens off loopback only with authentication; set {USERS_ENV} "
            "(entries name:role:hash, hash from `coordinator dashboard --hash-password`)")
    app = create_app(coord, users=users, flower_url=flower_url)
    print(f"dashboard on http://{host}:{port}/ ("
          f"{f'{len(users)} users' if users else 'loopback clients only, no login'})", flush=True)
    # SSE streams stay open: do not wait for them on shutdown longer than this
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=2,
                    proxy_headers=False)
    except KeyboardInterrupt:  # Ctrl-C is how it stops; older uvicorn re-raises it after shutting down
        pass
