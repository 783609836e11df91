"""Throwaway servers for tests that restart, reconfigure or secure Redis (the shared test Redis is
never touched that way): `coordinator.redis_server.RedisServer`, plus groups of them."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from coordinator.redis_server import RedisServer, free_port
from coordinator.workers.process import stop as _stop

__all__ = ["RedisServer", "ServerGroup", "free_port", "redis_server", "stop_process"]


@contextmanager
def redis_server(*args: str, port: int | None = None, password: str | None = None) -> Iterator[str]:
    """A throwaway server with AOF on (unless ``args`` say otherwise); yields its URL."""
    with RedisServer("--appendonly", "yes", *args, port=port, password=password) as server:
        yield server.url


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` s; reaped either way."""
    _stop(process, timeout)


class ServerGroup:
    """Several servers started and stopped together; stops what it started if the start fails."""

    def start(self) -> ServerGroup:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self):  # type: ignore[no-untyped-def]
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
