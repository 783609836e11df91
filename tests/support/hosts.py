"""Worker hosts for the scale-out tests and benchmark: a Redis reachable over each namespace's
link, and `coordinator worker` started inside each namespace."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.netns import NetnsHost

ROOT = Path(__file__).resolve().parents[2]
COORDINATOR_CLI = str(Path(sys.executable).with_name("coordinator"))


def redis_bind_args(hosts: list[NetnsHost]) -> list[str]:
    """redis-server arguments that make it listen on loopback and on each host end of the links."""
    return ["--bind", " ".join(["127.0.0.1", *(h.host_ip for h in hosts)]), "--protected-mode", "no"]


def start_host_worker(host: NetnsHost, port: int, prefix: str, queue: str, processor: str,
                      pool: str = "solo", concurrency: int = 1, log: Path | None = None) -> subprocess.Popen[bytes]:
    """`coordinator worker` in the namespace, talking to Redis at the host end of its link."""
    env = dict(os.environ, REDIS_URL=f"redis://{host.host_ip}:{port}/0", JQC_PREFIX=prefix,
               PYTHONPATH=str(ROOT), LOG_LEVEL="WARNING")
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - closed with the process
    return host.popen(
        [COORDINATOR_CLI, "--app", "tests.scaleout.host_app:make", "worker", "-q", queue, "-p", processor,
         "-P", pool, "-c", str(concurrency)],
        env=env, stdout=out, stderr=subprocess.STDOUT, cwd=str(ROOT),
    )


def stop_worker(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM the worker's process group, SIGKILL it if it lingers, and reap it."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue
