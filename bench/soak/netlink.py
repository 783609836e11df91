"""Worker hosts whose link the soak can cut: network namespaces joined by veth pairs
(`tests/support/netns.py`), each running an unmanaged `coordinator worker` that talks to the
soak's Redis across its link. Needs root and `ip netns`; otherwise the ``link_cut`` fault is
skipped and the report says why.
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.support.hosts import COORDINATOR_CLI, ROOT, redis_bind_args, stop_worker
from tests.support.netns import NetnsHost, NetnsHosts, netns_unavailable

__all__ = ["LinkHosts", "netns_unavailable"]


class LinkHosts:
    """``count`` namespaces, created on enter and removed on exit with their workers."""

    def __init__(self, count: int) -> None:
        self._hosts = NetnsHosts(count)
        self.hosts: list[NetnsHost] = []
        self.workers: list[subprocess.Popen[bytes]] = []
        self.port = 0

    def __enter__(self) -> LinkHosts:
        self.hosts = self._hosts.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_workers()
        self._hosts.__exit__()

    def redis_args(self) -> list[str]:
        """redis-server arguments: listen on loopback and on each host's end of its link."""
        # the namespaces exist only once entered; the addresses are fixed at construction
        return redis_bind_args(self._hosts.hosts)

    def start_workers(self, port: int, prefix: str, queue: str, processor: str, logdir: Path) -> None:
        """One `coordinator worker` (threads, 2) per host, across its link, on ``queue``."""
        self.port = port
        for host in self.hosts:
            env = dict(os.environ, REDIS_URL=f"redis://{host.host_ip}:{port}/0", JQC_PREFIX=prefix,
                       PYTHONPATH=str(ROOT), LOG_LEVEL="WARNING", JQC_SOAK_REDIS_URL=f"redis://{host.host_ip}:{port}/0")
            log = open(logdir / f"{host.ns}.log", "wb")  # noqa: SIM115 - closed with the process
            self.workers.append(host.popen(
                [COORDINATOR_CLI, "--app", "bench.soak.tasks:host_coordinator", "worker", "-q", queue,
                 "-p", processor, "-P", "threads", "-c", "2"],
                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT)))

    def cut(self, rng: random.Random) -> dict[str, Any]:
        """Pull one host's cable for 1-5 s, proven by a connection from inside that fails."""
        host = rng.choice(self.hosts)
        host.cut()
        try:
            cut_off = not host.reaches(self.port, timeout_s=0.5)
            time.sleep(rng.uniform(1, 5))
        finally:
            host.restore()
        return {"host": host.hostname, "cut_off": cut_off}

    def stop_workers(self) -> None:
        for worker in self.workers:
            stop_worker(worker)
        self.workers.clear()
