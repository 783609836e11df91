"""A throwaway three-master Redis Cluster on loopback ports (no replicas), for the registry test."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis
from redis.cluster import RedisCluster

from tests.support.servers import RedisServer, ServerGroup, free_port


class RedisClusterGroup(ServerGroup):
    """Three `redis-server --cluster-enabled yes` nodes joined with `redis-cli --cluster create`."""

    def __init__(self, masters: int = 3) -> None:
        self.nodes = []
        for _ in range(masters):
            bus = free_port()  # the default bus port (port + 10000) may lie past 65535
            self.nodes.append(RedisServer("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                                          "--cluster-node-timeout", "5000", "--cluster-port", str(bus)))

    def start(self) -> RedisClusterGroup:
        for node in self.nodes:
            node.start()
        subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes), "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all(n.client().cluster("info")["cluster_state"] == "ok" for n in self.nodes):
                return self
            time.sleep(0.1)
        raise RuntimeError("the cluster did not reach cluster_state:ok")

    def client(self) -> RedisCluster:
        return RedisCluster(host="127.0.0.1", port=self.nodes[0].port, decode_responses=True)

    def node_of(self, key: str) -> int:
        """The port of the master that holds ``key``."""
        slot = self.nodes[0].client().cluster("keyslot", key)
        for node in self.nodes:
            for start, end, *_ in _slot_ranges(node.client()):
                if start <= slot <= end:
                    return node.port
        raise RuntimeError(f"no node holds slot {slot}")

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()
            shutil.rmtree(Path(node.dir), ignore_errors=True)


def _slot_ranges(client: redis.Redis) -> list[tuple[int, int]]:
    myself = client.execute_command("CLUSTER", "MYID")
    ranges = []
    for slot in client.execute_command("CLUSTER", "SLOTS"):
        start, end, master = slot[0], slot[1], slot[2]
        if master[2] == myself:
            ranges.append((start, end))
    return ranges
