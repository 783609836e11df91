"""A private `redis-server` on a free loopback port, for tests that reconfigure or stop Redis."""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def redis_server(*args: str, port: int | None = None, password: str | None = None) -> Iterator[str]:
    """Start ``redis-server`` with AOF on (unless ``args`` say otherwise); yield its URL; stop it."""
    port = port or free_port()
    with tempfile.TemporaryDirectory(prefix="jqc-redis-") as workdir:
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", workdir,
                "--appendonly", "yes", "--save", "", "--daemonize", "no", "--loglevel", "warning"]
        if password:
            argv += ["--requirepass", password]
        proc = subprocess.Popen([*argv, *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        auth = f":{password}@" if password else ""
        url = f"redis://{auth}127.0.0.1:{port}/0"
        client = redis.Redis.from_url(url)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server on port {port} did not start") from None
                    time.sleep(0.02)
            yield url
        finally:
            client.close()
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
