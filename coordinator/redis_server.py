"""Throwaway `redis-server` processes on free loopback ports: the one helper behind the demo (when
no Redis answers), the `coordinator.testing` plugin, the project's tests and the benchmark.

Each server gets its own port and temporary directory (removed when it stops) and never persists
anything unless the caller passes persistence flags; it runs in its own session, so a Ctrl-C in
the terminal reaches the caller, which stops it in order.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from coordinator.errors import ConfigurationError
from coordinator.settings import redact_url
from coordinator.workers.process import stop as stop_process

START_TIMEOUT_S = 10.0

#: What to tell a user who has neither a reachable Redis nor `redis-server` installed.
INSTALL_HINT = """\
No Redis answered at {url}, and no `redis-server` is installed to start a throwaway one.
Get one, then run again:
  Debian / Ubuntu:  sudo apt-get install redis-server
  macOS (Homebrew): brew install redis
  Docker:           docker run --rm -p 6379:6379 redis:7
or point REDIS_URL at a Redis you can reach (e.g. REDIS_URL=redis://host:6379/0)."""


class NoRedisError(ConfigurationError):
    """No Redis is reachable and none can be started here; the message says how to get one."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on at the moment."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def reachable(url: str, timeout_s: float = 1.0) -> bool:
    """True when a Redis answers PING at ``url`` within ``timeout_s``."""
    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


class RedisServer:
    """A `redis-server` on 127.0.0.1 with its own port and directory, without persistence unless
    ``args`` ask for it (``"--appendonly", "yes"``); ``restart()`` keeps port, directory and AOF.

    Use as a context manager, or ``start()`` / ``stop()``. ``tls=True`` serves TLS only (pass the
    certificate flags in ``args``); ``password`` sets ``requirepass``.
    """

    def __init__(self, *args: str, port: int | None = None, tls: bool = False, password: str | None = None,
                 binary: str | None = None) -> None:
        self.port = port or free_port()
        self.tls = tls
        self.password = password
        self.args = list(args)
        self.binary = binary or shutil.which("redis-server") or ""
        self.dir = Path(tempfile.mkdtemp(prefix="jqc-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's URL (database 0), with the password if it has one."""
        return self.url_for(0)

    def url_for(self, db: int) -> str:
        """The URL of database ``db``."""
        auth = f":{self.password}@" if self.password else ""
        return f"{'rediss' if self.tls else 'redis'}://{auth}127.0.0.1:{self.port}/{db}"

    @property
    def log_file(self) -> Path:
        return self.dir / "redis.log"

    def start(self) -> RedisServer:
        """Start the server and return once it accepts connections; `ConfigurationError` if it
        exits or does not listen within 10 s (with the tail of its log), `NoRedisError` if
        `redis-server` is not installed."""
        if not self.binary:
            raise NoRedisError(INSTALL_HINT.format(url=f"127.0.0.1:{self.port}"))
        port_args = ["--port", "0", "--tls-port", str(self.port)] if self.tls else ["--port", str(self.port)]
        self.process = subprocess.Popen(
            [self.binary, "--bind", "127.0.0.1", *port_args, "--dir", str(self.dir), "--save", "",
             "--appendonly", "no", "--logfile", str(self.log_file), "--daemonize", "no",
             "--enable-debug-command", "local", *(["--requirepass", self.password] if self.password else []),
             *self.args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            self._wait_listening()
        except BaseException:  # Ctrl-C or a failed start: leave no server behind
            self.kill()
            raise
        return self

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                break
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        log = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
        raise ConfigurationError(f"redis-server did not start on 127.0.0.1:{self.port}:\n{log}")

    def stop(self) -> None:
        """SIGTERM (SIGKILL after 10 s); the directory stays for a `start()` or `restart()`."""
        if self.process is not None:
            stop_process(self.process, timeout=10)

    def kill(self) -> None:
        """SIGKILL: no shutdown save, no goodbye to clients."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def restart(self) -> None:
        """Stop and start again on the same port and directory."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Kill the server and remove its directory."""
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def client(self, db: int = 0, **kwargs: object) -> redis.Redis:
        """A decoding client for database ``db`` (plain TCP; pass ``ssl=True``... for a TLS server)."""
        return redis.Redis(host="127.0.0.1", port=self.port, db=db, password=self.password,
                           decode_responses=True, **kwargs)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def find_or_start_redis(url: str) -> tuple[str, RedisServer | None]:
    """The Redis at ``url`` if it answers, else a throwaway server: ``(url, server or None)``.
    The caller closes the server. `NoRedisError` (saying how to get one) if neither is possible."""
    if reachable(url):
        return url, None
    if shutil.which("redis-server") is None:
        raise NoRedisError(INSTALL_HINT.format(url=redact_url(url)))
    server = RedisServer().start()
    return server.url, server
