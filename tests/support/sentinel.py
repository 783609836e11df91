"""A throwaway Redis Sentinel group on loopback ports: a master, a replica and three sentinels
(reusing `RedisServer` for the data nodes), for the failover test."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

from tests.support.servers import RedisServer, ServerGroup, free_port

MASTER_NAME = "jqcmaster"


class SentinelGroup(ServerGroup):
    """Master + replica + three sentinels (quorum 2) that fail over within a few seconds."""

    def __init__(self, down_after_ms: int = 1000) -> None:
        self.master = RedisServer()
        self.replica = RedisServer("--replicaof", "127.0.0.1", str(self.master.port))
        self.down_after_ms = down_after_ms
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen[bytes]] = []

    def url(self, password: str = "") -> str:
        auth = f":{password}@" if password else ""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"sentinel://{auth}{hosts}/0?master_name={MASTER_NAME}"

    def start(self) -> SentinelGroup:
        self.master.start()
        self.replica.start()
        self._wait(lambda: self.replica.client().info("replication").get("master_link_status") == "up",
                   "replica did not sync")
        for port in self.sentinel_ports:
            conf = self.master.dir / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.master.dir}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {self.down_after_ms}\n"
                f"sentinel failover-timeout {MASTER_NAME} 5000\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n"
            )
            self.sentinels.append(subprocess.Popen(
                ["redis-server", str(conf), "--sentinel"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            ))
        # Every sentinel knows the replica and the other sentinels before anything is killed.
        self._wait(self._sentinels_ready, "sentinels did not discover each other")
        return self

    def _sentinels_ready(self) -> bool:
        for port in self.sentinel_ports:
            try:
                info = self.sentinel_client(port).sentinel_master(MASTER_NAME)
            except (redis.ConnectionError, redis.ResponseError):
                return False
            if int(info.get("num-other-sentinels", 0)) < 2 or int(info.get("num-slaves", 0)) < 1:
                return False
        return True

    def sentinel_client(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=2)

    def master_port(self) -> int | None:
        """The master's port as the first answering sentinel reports it."""
        for port in self.sentinel_ports:
            try:
                addr = self.sentinel_client(port).sentinel_get_master_addr_by_name(MASTER_NAME)
            except redis.ConnectionError:
                continue
            if addr:
                return int(addr[1])
        return None

    def _wait(self, check, what: str, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except (redis.ConnectionError, redis.ResponseError):
                pass
            time.sleep(0.05)
        raise RuntimeError(what)

    def stop(self) -> None:
        for process in self.sentinels:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        for server in (self.master, self.replica):
            server.kill()
            shutil.rmtree(Path(server.dir), ignore_errors=True)
