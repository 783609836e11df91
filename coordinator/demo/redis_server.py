"""The Redis the demo runs on: the one at REDIS_URL when it answers, else a throwaway `redis-server`."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from coordinator.errors import ConfigurationError
from coordinator.settings import redact_url

#: What to tell a user who has neither a reachable Redis nor `redis-server` installed.
INSTALL_HINT = """\
No Redis answered at {url}, and no `redis-server` is installed to start a throwaway one.
Get one, then run the demo again:
  Debian / Ubuntu:  sudo apt-get install redis-server
  macOS (Homebrew): brew install redis
  Docker:           docker run --rm -p 6379:6379 redis:7
or point REDIS_URL at a Redis you can reach (e.g. REDIS_URL=redis://host:6379/0)."""

START_TIMEOUT_S = 10.0


class NoRedisError(ConfigurationError):
    """No Redis is reachable and none can be started here; the message says how to get one."""


@dataclass
class DemoRedis:
    """A Redis URL for the demo, and the throwaway server behind it if the demo started one."""

    url: str
    process: subprocess.Popen[bytes] | None = None
    workdir: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def owned(self) -> bool:
        return self.process is not None

    def stop(self) -> None:
        """Stop the throwaway server (if any) and remove its directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def reachable(url: str, timeout_s: float = 1.0) -> bool:
    """True when a Redis answers PING at ``url`` within ``timeout_s``."""
    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def find_or_start_redis(url: str) -> DemoRedis:
    """The Redis at ``url`` if it answers; otherwise a new `redis-server` on a free loopback port."""
    if reachable(url):
        return DemoRedis(url=url, notes=[f"using the Redis at {redact_url(url)}"])
    binary = shutil.which("redis-server")
    if binary is None:
        raise NoRedisError(INSTALL_HINT.format(url=redact_url(url)))
    return start_throwaway(binary, unreachable=url)


def start_throwaway(binary: str, unreachable: str = "") -> DemoRedis:
    """Start `redis-server` on 127.0.0.1, no persistence, in a temp dir; return once it answers."""
    workdir = Path(tempfile.mkdtemp(prefix="jqc-demo-redis-"))
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--logfile", str(workdir / "redis.log"), "--daemonize", "no"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C in the terminal reaches the demo, which stops it in order
    )
    server = DemoRedis(url=f"redis://127.0.0.1:{port}/0", process=process, workdir=workdir)
    try:
        return _wait_started(server, process, workdir, port, unreachable)
    except BaseException:  # Ctrl-C or a failed start: leave no server behind
        server.stop()
        raise


def _wait_started(server: DemoRedis, process: subprocess.Popen[bytes], workdir: Path, port: int,
                  unreachable: str) -> DemoRedis:
    """Return ``server`` once it answers PING; ConfigurationError if it exits or does not in time."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if reachable(server.url, timeout_s=0.2):
            reason = f"no Redis answered at {redact_url(unreachable)}; " if unreachable else ""
            server.notes.append(
                f"{reason}started a throwaway redis-server (pid {process.pid}) on 127.0.0.1:{port}, "
                f"no persistence, in {workdir}; it is stopped at the end"
            )
            return server
        time.sleep(0.05)
    log = (workdir / "redis.log").read_text(errors="replace")[-2000:] if (workdir / "redis.log").exists() else ""
    raise ConfigurationError(f"redis-server did not start on 127.0.0.1:{port}:\n{log}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on at the moment."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
