"""Redis Sentinel URLs: one spelling for the coordinator, translated for redis-py, kombu, Celery and redbeat.

Accepted forms (the password is the master's; the sentinels' own password comes from
``sentinel_password`` / REDIS_SENTINEL_PASSWORD, the master name from ``?master_name=`` or
``sentinel_master`` / REDIS_SENTINEL_MASTER)::

    sentinel://:pass@10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379/0?master_name=mymaster
    sentinel://:pass@10.0.0.1:26379/0;sentinel://:pass@10.0.0.2:26379/0     (kombu's and Celery's own form)

kombu and Celery want the second form with ``master_name`` in the transport options; redbeat
wants ``redis-sentinel://`` with the sentinels in ``redbeat_redis_options``. All of them end at
the same master, so the Redis fast path (scripts pushing kombu messages) holds under Sentinel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

from coordinator.errors import ConfigurationError

SCHEME = "sentinel"
DEFAULT_SENTINEL_PORT = 26379
#: Query parameters that name the master group.
MASTER_PARAMS = ("master_name", "master", "service_name")


def is_sentinel_url(url: str | None) -> bool:
    return bool(url) and url.split("://", 1)[0] == SCHEME  # type: ignore[union-attr]


@dataclass(frozen=True)
class SentinelTarget:
    """The sentinels, the master group they watch, and how to log in to the master and to them."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None

    @property
    def kombu_url(self) -> str:
        """``sentinel://:pass@h1:p1/db;sentinel://:pass@h2:p2/db``, as kombu and Celery parse it."""
        auth = ""
        if self.password is not None:
            auth = f"{quote(self.username or '', safe='')}:{quote(self.password, safe='')}@"
        return ";".join(f"{SCHEME}://{auth}{host}:{port}/{self.db}" for host, port in self.sentinels)

    @property
    def sentinel_kwargs(self) -> dict[str, Any]:
        """Keywords of the connections to the sentinels themselves."""
        return {"password": self.sentinel_password} if self.sentinel_password else {}

    def transport_options(self) -> dict[str, Any]:
        """What kombu's Sentinel transport and Celery's Sentinel backend need besides the URL."""
        options: dict[str, Any] = {"master_name": self.master}
        if self.sentinel_kwargs:
            options["sentinel_kwargs"] = self.sentinel_kwargs
        return options

    def redbeat_options(self, socket_timeout_s: float) -> dict[str, Any]:
        """``redbeat_redis_options`` for ``redbeat_redis_url = "redis-sentinel://"``."""
        options: dict[str, Any] = {
            "sentinels": [list(s) for s in self.sentinels], "service_name": self.master, "db": self.db,
            "socket_timeout": socket_timeout_s,
        }
        if self.password is not None:
            options["password"] = self.password
        if self.username:
            options["username"] = self.username
        if self.sentinel_kwargs:
            options["sentinel_kwargs"] = self.sentinel_kwargs
        return options


def parse_sentinel_url(url: str, master: str | None = None, sentinel_password: str | None = None) -> SentinelTarget:
    """The target of a ``sentinel://`` URL in either accepted form (see the module docstring)."""
    hosts: list[tuple[str, int]] = []
    username = password = None
    db = 0
    query: dict[str, str] = {}
    for chunk in url.split(";"):
        chunk = chunk.strip()
        if not chunk:
            continue
        if not is_sentinel_url(chunk):
            raise ConfigurationError("url: every part of a Sentinel URL must start with sentinel://")
        rest = chunk.split("://", 1)[1]
        rest, _, query_text = rest.partition("?")
        query.update(parse_qsl(query_text))
        netloc, _, path = rest.partition("/")
        if "@" in netloc:
            auth, netloc = netloc.rsplit("@", 1)
            user, _, pwd = auth.partition(":")
            username, password = unquote(user) or None, unquote(pwd) if pwd else None
        if path.strip("/"):
            if not path.strip("/").isdigit():
                raise ConfigurationError(f"url: the database of a Sentinel URL must be a number, not {path!r}")
            db = int(path.strip("/"))
        for host in netloc.split(","):
            hosts.append(_host_port(host))
    name = master or next((query[p] for p in MASTER_PARAMS if query.get(p)), None)
    if not hosts:
        raise ConfigurationError("url: a Sentinel URL needs at least one sentinel host:port")
    if not name:
        raise ConfigurationError(
            "sentinel_master: name the master group (REDIS_SENTINEL_MASTER, or ?master_name= in the URL)"
        )
    return SentinelTarget(tuple(hosts), name, db, username, password, sentinel_password)


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.strip().rpartition(":") if ":" in text else (text.strip(), "", "")
    if port and not port.isdigit():
        raise ConfigurationError(f"url: bad sentinel address {text!r} (host:port)")
    if not host:
        raise ConfigurationError(f"url: bad sentinel address {text!r} (host:port)")
    return host.strip("[]"), int(port) if port else DEFAULT_SENTINEL_PORT
