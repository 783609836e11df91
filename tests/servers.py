"""Throwaway `redis-server` processes on free loopback ports, for tests that restart,
reconfigure or secure Redis (the shared Redis on 6379 is never touched that way)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A redis-server with its own port and directory; `restart()` keeps both (and its AOF)."""

    def __init__(self, *args: str, port: int | None = None, tls: bool = False, password: str | None = None) -> None:
        self.port = port or free_port()
        self.tls = tls
        self.password = password
        self.dir = Path(tempfile.mkdtemp(prefix="jqc-redis-"))
        self.args = list(args)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"{'rediss' if self.tls else 'redis'}://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        port_args = ["--port", "0", "--tls-port", str(self.port)] if self.tls else ["--port", str(self.port)]
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", *port_args, "--dir", str(self.dir), "--save", "",
             "--enable-debug-command", "local", *(["--requirepass", self.password] if self.password else []),
             *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )
        self._wait_listening()
        return self

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not listen on {self.port}")

    def stop(self) -> None:
        if self.process:
            stop_process(self.process)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self, **kwargs: object) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, decode_responses=True,
                           **kwargs)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def redis_server(*args: str, port: int | None = None, password: str | None = None) -> Iterator[str]:
    """A throwaway server with AOF on (unless ``args`` say otherwise); yields its URL."""
    with RedisServer("--appendonly", "yes", *args, port=port, password=password) as server:
        yield server.url


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` s; reaped either way."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


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
