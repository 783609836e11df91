"""The dashboard's ASGI app: `create_app(coord)` builds it; pages in `pages.py`, actions in
`actions.py`, the gate in `guard.py`, live updates in `live.py`."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from coordinator.dashboard import actions, pages
from coordinator.dashboard.auth import Authenticator, User, users_from
from coordinator.dashboard.guard import CsrfTokens, Guard
from coordinator.dashboard.live import LiveHub

if TYPE_CHECKING:
    from coordinator.facade import JobQueueCoordinator

HERE = Path(__file__).parent
FLOWER_URL_ENV = "JQC_DASHBOARD_FLOWER_URL"
SECRET_ENV = "JQC_DASHBOARD_SECRET"


class Dashboard:
    """What the handlers share: the coordinator, the templates, the live hub, the settings."""

    def __init__(self, coord: JobQueueCoordinator, flower_url: str | None, title: str) -> None:
        self.coord = coord
        self.flower_url = (flower_url or "").rstrip("/") or None
        self.title = title
        self.live = LiveHub(coord)
        self.templates = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True, lstrip_blocks=True,
        )
        self.templates.filters["when"] = pages.when
        self.templates.filters["size"] = pages.human_bytes

    def render(self, request: Request, template: str, status_code: int = 200,
               headers: Mapping[str, str] | None = None, **context: Any) -> HTMLResponse:
        """The template with what every page needs: base path, user, CSRF token, Flower link."""
        user: User = request.state.user
        html = self.templates.get_template(template).render(
            base=request.scope.get("root_path", ""), user=user, csrf_token=request.state.csrf_token,
            flower_url=self.flower_url, title=self.title, request=request, **context,
        )
        return HTMLResponse(html, status_code=status_code, headers=headers)


def create_app(coord: JobQueueCoordinator, *, users: str | Mapping[str, User] | None = None,
               flower_url: str | None = None, secret: str | bytes | None = None,
               title: str = "Job Queue Coordinator") -> ASGIApp:
    """The dashboard as an ASGI app, to serve (``coordinator dashboard``) or mount in a Starlette,
    FastAPI or Django (ASGI) project.

    ``users``: ``name:role:hash`` entries or `User`s; default ``JQC_DASHBOARD_USERS``; none means
    loopback clients only. ``flower_url``: Flower's base URL for the job -> task links (default
    ``JQC_DASHBOARD_FLOWER_URL``). ``secret`` signs the CSRF tokens (default
    ``JQC_DASHBOARD_SECRET``, else random per process: tokens then last until a restart).
    """
    dash = Dashboard(coord, flower_url or os.environ.get(FLOWER_URL_ENV), title)
    key = secret or os.environ.get(SECRET_ENV) or secrets.token_bytes(32)
    key = key.encode() if isinstance(key, str) else key
    routes = [
        *pages.routes(dash),
        *actions.routes(dash),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers=actions.exception_handlers(dash))
    app.state.dashboard = dash
    return Guard(app, Authenticator(users_from(users)), CsrfTokens(key))


__all__ = ["Dashboard", "create_app"]
