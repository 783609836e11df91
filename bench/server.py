"""A dedicated `redis-server` on a free loopback port, and the counters the benchmark reads from it.

The benchmark never measures the shared Redis on 6379: other work there would pollute the command
counts and memory figures.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from coordinator.redis_server import RedisServer


class DedicatedRedis(RedisServer):
    """`redis-server` without persistence on a free loopback port (`coordinator.redis_server`);
    stopping it also removes its directory."""

    def stop(self) -> None:
        self.close()


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
