"""The peers of the benchmark: BullMQ (Python port and Node) and RQ, run from their own installs.

Each peer has a driver (a long-lived process that runs one phase per command on its stdin and
answers with the library's own wall time) and a worker command. The worker runs as a subprocess
of the benchmark, like Celery's, so its CPU and memory are read the same way; completions are
counted with one ``ZCARD`` of the peer's finished-jobs set.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from bench.peers.setup import NODE_DIR, node_binary, peers_python
from coordinator.workers.process import stop as stop_process

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class PeerKind:
    name: str
    db: int
    """Database of the dedicated Redis (the coordinator uses 0, the Celery apps 1 to 4)."""
    workers: int
    """Worker processes started for processing (RQ: 2, one job each; BullMQ: 1, concurrency 2)."""
    finished_key: str
    runtime: str
    """``python`` (the peers' venv) or ``node``."""
    script: Path
    pool: str


PEERS = {
    "bullmq-python": PeerKind("bullmq-python", 5, 1, "bull:bench:completed", "python",
                              HERE / "bullmq_driver.py", "asyncio, concurrency 2"),
    "bullmq-node": PeerKind("bullmq-node", 6, 1, "bull:bench:completed", "node",
                            NODE_DIR / "bullmq_driver.mjs", "Node, concurrency 2"),
    "rq": PeerKind("rq", 7, 2, "rq:finished:bench", "python", HERE / "rq_driver.py",
                   "2 workers (fork per job)"),
}


def available(names: list[str]) -> list[str]:
    """The peers among ``names`` that can run here (BullMQ on Node needs node and npm)."""
    return [name for name in names if name != "bullmq-node" or node_binary() is not None]


class PeerSubject:
    """One peer: phases through its driver, processing by its worker subprocesses."""

    poll_command = "zcard"

    def __init__(self, name: str, port: int, log_dir: Path) -> None:
        self.kind = PEERS[name]
        self.name = name
        self.pool = self.kind.pool
        self.url = f"redis://127.0.0.1:{port}/{self.kind.db}"
        self.redis = redis.Redis(host="127.0.0.1", port=port, db=self.kind.db)
        self.log_path = log_dir / f"{name}.log"
        binary = str(peers_python() if self.kind.runtime == "python" else node_binary())
        self._argv = [binary, str(self.kind.script), self.url]
        self._cwd = self.kind.script.parent
        self._driver = self._spawn("driver", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._workers: list[subprocess.Popen[bytes]] = []
        self.worker_pid = 0

    def _spawn(self, role: str, **streams: Any) -> subprocess.Popen[bytes]:
        streams.setdefault("stdin", subprocess.DEVNULL)
        log_file = open(self.log_path, "ab")
        try:
            return subprocess.Popen([*self._argv, role], cwd=self._cwd, stderr=log_file,
                                    stdout=streams.pop("stdout", log_file), start_new_session=True, **streams)
        finally:
            log_file.close()

    def _ask(self, command: str, count: int) -> dict[str, Any]:
        assert self._driver.stdin is not None and self._driver.stdout is not None
        self._driver.stdin.write(f"{command} {count}\n".encode())
        self._driver.stdin.flush()
        line = self._driver.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name}: the driver exited (see {self.log_path})")
        return json.loads(line)

    def enqueue_phase(self, jobs: int) -> float:
        return float(self._ask("enqueue", jobs)["elapsed_s"])

    def bulk_phase(self, jobs: int) -> float:
        return float(self._ask("bulk", jobs)["elapsed_s"])

    def round_trips(self, samples: int) -> list[float]:
        return list(self._ask("round_trip", samples)["latencies_ms"])

    def start_worker(self) -> None:
        self._workers = [self._spawn("worker") for _ in range(self.kind.workers)]
        self.worker_pid = self._workers[0].pid

    @property
    def worker_pids(self) -> list[int]:
        return [worker.pid for worker in self._workers]

    def wait_consuming(self) -> None:
        self.round_trips(1)

    def stop_worker(self) -> None:
        for worker in self._workers:
            stop_process(worker, timeout=30)
        self._workers = []

    def finished(self) -> int:
        return int(self.redis.zcard(self.kind.finished_key))

    def purge(self) -> None:
        self.redis.flushdb()

    def close(self) -> None:
        self.stop_worker()
        if self._driver.stdin is not None:
            try:
                self._driver.stdin.close()
            except OSError:  # the driver already exited
                pass
        try:
            self._driver.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._driver.kill()
            self._driver.wait()
