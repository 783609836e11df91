"""The dashboard's gate (plain ASGI middleware): who is asking, may they act, is the action
theirs (CSRF), and the security headers of every response.

- Users configured: HTTP Basic auth on every request. None configured: loopback clients only,
  as operators; any other client gets 403.
- A request that changes something (any method but GET/HEAD/OPTIONS) needs the operator role,
  an ``X-CSRF-Token`` header matching the ``jqc_csrf`` cookie, and a signature binding that
  token to the user; an ``Origin`` header, when sent, must be the dashboard's own.
- Every response forbids framing and inline scripts (Content-Security-Policy), so a job
  payload that slipped past escaping still could not run.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from http.cookies import SimpleCookie
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coordinator.dashboard.auth import LOCAL_OPERATOR, Authenticator, User, is_loopback

CSRF_COOKIE = "jqc_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SECURITY_HEADERS = {
    "content-security-policy": ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                                "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
                                "base-uri 'none'; form-action 'self'"),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


class CsrfTokens:
    """Tokens ``<nonce>.<signature>`` where the signature binds the nonce to one user."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def new(self, user: User) -> str:
        nonce = secrets.token_urlsafe(18)
        return f"{nonce}.{self._sign(nonce, user)}"

    def valid(self, token: str, user: User) -> bool:
        nonce, _, signature = token.partition(".")
        return bool(nonce) and hmac.compare_digest(signature, self._sign(nonce, user))

    def _sign(self, nonce: str, user: User) -> str:
        return hmac.new(self._secret, f"{nonce}|{user.name}".encode(), hashlib.sha256).hexdigest()[:32]


class Guard:
    """Wraps the dashboard app; puts ``user`` and ``csrf_token`` in ``scope["state"]``."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator, tokens: CsrfTokens) -> None:
        self.app = app
        self.authenticator = authenticator
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        user, refusal = self._user(scope, headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        assert user is not None
        cookie = _cookie(headers, CSRF_COOKIE)
        token = cookie if cookie and self.tokens.valid(cookie, user) else None
        if scope["method"] not in SAFE_METHODS:
            problem = self._action_problem(scope, headers, user, token)
            if problem:
                await PlainTextResponse(problem, status_code=403)(scope, receive, send)
                return
        fresh = token is None
        token = token or self.tokens.new(user)
        state = scope.setdefault("state", {})
        state["user"] = user
        state["csrf_token"] = token
        cookie_path = scope.get("root_path") or "/"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    out.setdefault(name, value)
                if fresh:
                    out.append("set-cookie", f"{CSRF_COOKIE}={token}; Path={cookie_path}; HttpOnly; SameSite=Strict")
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _user(self, scope: Scope, headers: Headers) -> tuple[User | None, Any]:
        if not self.authenticator.users:
            client = scope.get("client")
            if is_loopback(client[0] if client else None):
                return LOCAL_OPERATOR, None
            return None, PlainTextResponse(
                "The dashboard without users serves loopback clients only: set JQC_DASHBOARD_USERS.",
                status_code=403)
        user = self.authenticator(headers.get("authorization"))
        if user is None:
            return None, PlainTextResponse("Authentication required.", status_code=401,
                                           headers={"WWW-Authenticate": 'Basic realm="coordinator dashboard"'})
        return user, None

    @staticmethod
    def _action_problem(scope: Scope, headers: Headers, user: User, token: str | None) -> str:
        if not user.can_act:
            return f"User {user.name!r} has the viewer role: read only."
        sent = headers.get(CSRF_HEADER, "")
        if token is None or not sent or not hmac.compare_digest(sent, token):
            return "CSRF check failed: reload the page and try again."
        origin = headers.get("origin")
        if origin and origin.split("://", 1)[-1] != headers.get("host", ""):
            return "CSRF check failed: the request comes from another origin."
        return ""


def _cookie(headers: Headers, name: str) -> str | None:
    raw = headers.get("cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # a malformed cookie header is treated as no cookie
        return None
    morsel = jar.get(name)
    return morsel.value if morsel else None
