"""The Redis the demo runs on: the one at REDIS_URL when it answers, else a throwaway `redis-server`
(`coordinator.redis_server`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from coordinator.redis_server import NoRedisError, RedisServer
from coordinator.redis_server import find_or_start_redis as _find_or_start
from coordinator.settings import redact_url

__all__ = ["DemoRedis", "NoRedisError", "find_or_start_redis"]


@dataclass
class DemoRedis:
    """A Redis URL for the demo, and the throwaway server behind it if the demo started one."""

    url: str
    server: RedisServer | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def owned(self) -> bool:
        return self.server is not None

    @property
    def pid(self) -> int | None:
        return self.server.process.pid if self.server is not None and self.server.process else None

    def stop(self) -> None:
        """Stop the throwaway server (if any) and remove its directory."""
        if self.server is not None:
            self.server.close()


def find_or_start_redis(url: str) -> DemoRedis:
    """The Redis at ``url`` if it answers; otherwise a new `redis-server` on a free loopback port."""
    found, server = _find_or_start(url)
    if server is None:
        return DemoRedis(url=found, notes=[f"using the Redis at {redact_url(found)}"])
    return DemoRedis(url=found, server=server, notes=[
        f"no Redis answered at {redact_url(url)}; started a throwaway redis-server (pid {server.process.pid}) "  # type: ignore[union-attr]
        f"on 127.0.0.1:{server.port}, no persistence, in {server.dir}; it is stopped at the end"])
