"""A dedicated `redis-server` on a free loopback port, and the counters the benchmark reads from it.

The benchmark never measures the shared Redis on 6379: other work there would pollute the command
counts and memory figures.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass

import redis

from coordinator.workers.process import stop as stop_process


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DedicatedRedis:
    """Starts `redis-server` without persistence on a free loopback port; stops it on exit."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.mkdtemp(prefix="jqc-bench-redis-")
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> DedicatedRedis:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self._process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self._dir, "--databases", "16", "--protected-mode", "yes"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        client = self.client()
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self._process.poll() is not None:
                    raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.05)
        return self

    def url_for(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, db=db, decode_responses=True)

    def stop(self) -> None:
        if self._process is not None:
            stop_process(self._process, timeout=10)
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> DedicatedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class Counters:
    """Server-wide counters at one moment: commands by name, client reads, memory."""

    commands: dict[str, int]
    reads: int
    memory: int
    cpu_s: float
    """CPU seconds redis-server used so far (user + system)."""

    @classmethod
    def read(cls, client: redis.Redis) -> Counters:
        info = client.info("everything")  # one command: the delta holds exactly one INFO of ours
        commands = {name.removeprefix("cmdstat_"): int(value["calls"])
                    for name, value in info.items() if name.startswith("cmdstat_")}
        cpu = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        return cls(commands, int(info["total_reads_processed"]), int(info["used_memory"]), cpu)

    def since(self, before: Counters, own: dict[str, int] | None = None) -> CommandDelta:
        """What ran in between, less the benchmark's own INFO and ``own`` polling commands."""
        diff = {name: calls - before.commands.get(name, 0) for name, calls in self.commands.items()}
        own = {"info": 1, **(own or {})}
        for name, calls in own.items():
            diff[name] = diff.get(name, 0) - calls
        own_reads = sum(own.values())
        return CommandDelta({name: calls for name, calls in diff.items() if calls > 0}, self.reads - before.reads - own_reads)


@dataclass(frozen=True)
class CommandDelta:
    """Commands (including those run inside scripts) and client reads between two `Counters`."""

    commands: dict[str, int]
    reads: int

    def per_job(self, jobs: int) -> dict[str, float]:
        """Commands per job and round trips per job (``reads``: requests Redis read from clients)."""
        total = sum(self.commands.values())
        top = sorted(self.commands.items(), key=lambda item: -item[1])[:8]
        return {
            "commands": round(total / jobs, 2),
            "round_trips": round(self.reads / jobs, 2),
            "by_command": {name: round(calls / jobs, 2) for name, calls in top},
        }
