"""The soak's seeded fault injector. Every fault is written to the history with its window
(``t0`` when it began, ``t1`` when the system was given back) and proof that it happened (the
killed pid, the connections killed, the new Redis run id, the link found cut).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

from bench.soak.history import History
from coordinator import JobQueueCoordinator, WorkerState
from coordinator.redis_server import RedisServer

#: Every kind the injector knows, for the report (a kind this machine cannot do is listed with why).
KINDS = ("worker_sigkill", "worker_sigterm", "child_sigkill", "child_sigterm", "beat_kill", "client_kill",
         "client_pause", "redis_restart", "link_cut")


class Beat:
    """The soak's own beat process (`bench.soak.beat`; workers run without an embedded one)."""

    def __init__(self, env: dict[str, str], log_path: str) -> None:
        self.env, self.log_path = env, log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "bench.soak.beat"], env=self.env,
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def kill(self) -> int:
        assert self.process is not None
        pid = self.process.pid
        os.killpg(pid, signal.SIGKILL)
        self.process.wait(10)
        return pid

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Injector:
    """Causes a fault every few seconds (seeded), gives the system back, records it."""

    coord: JobQueueCoordinator
    server: RedisServer
    history: History
    rng: random.Random
    beat: Beat
    cut_link: Callable[[random.Random], dict[str, Any]] | None = None
    """Cuts a worker host's link for a while and restores it (run.py, when namespaces work)."""
    unavailable: dict[str, str] = field(default_factory=dict)
    gap_s: tuple[float, float] = (1.5, 4.0)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    errors: list[str] = field(default_factory=list)

    def kinds(self) -> list[str]:
        return [kind for kind in KINDS if kind not in self.unavailable]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="soak-faults", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(120)

    def _loop(self) -> None:
        """Rounds in which every kind comes once, in a seeded random order, a few seconds apart
        (so even a short run sees each kind)."""
        round_: list[str] = []
        while not self._stop.wait(self.rng.uniform(*self.gap_s)):
            if not round_:
                round_ = self.kinds()
                self.rng.shuffle(round_)
            kind = round_.pop()
            t0 = time.time()
            try:
                detail = getattr(self, kind)()
            except Exception as exc:  # a fault that could not be caused is reported, not fatal
                self.errors.append(f"{kind}: {exc!r}")
                continue
            if detail is not None:
                self.history.write("fault", kind=kind, t0=t0, t1=time.time(), detail=detail)

    # ------------------------------------------------------------------ processes

    def _running_worker(self) -> Any:
        running = [w for w in self.coord.get_all_worker_status() if w.state is WorkerState.RUNNING and w.pid]
        return self.rng.choice(running) if running else None

    def _signal_worker(self, sig: signal.Signals) -> dict[str, Any] | None:
        worker = self._running_worker()
        if worker is None:
            return None
        if sig is signal.SIGKILL:
            os.killpg(worker.pid, sig)
        else:
            os.kill(worker.pid, sig)
        gone = _wait_gone(worker.pid, 40)
        return {"worker": worker.id, "pid": worker.pid, "exited": gone}

    def worker_sigkill(self) -> dict[str, Any] | None:
        """SIGKILL a managed worker's process group (main process and pool children)."""
        return self._signal_worker(signal.SIGKILL)

    def worker_sigterm(self) -> dict[str, Any] | None:
        """SIGTERM a managed worker's main process: Celery's warm shutdown, then the supervisor
        restarts it (nobody asked it to stop)."""
        return self._signal_worker(signal.SIGTERM)

    def _signal_child(self, sig: signal.Signals) -> dict[str, Any] | None:
        worker = self._running_worker()
        if worker is None:
            return None
        children = psutil.Process(worker.pid).children()
        if not children:
            return None
        child = self.rng.choice(children)
        os.kill(child.pid, sig)
        return {"worker": worker.id, "child": child.pid, "exited": _wait_gone(child.pid, 10)}

    def child_sigkill(self) -> dict[str, Any] | None:
        """SIGKILL one prefork pool child (Celery starts another; its job comes back)."""
        return self._signal_child(signal.SIGKILL)

    def child_sigterm(self) -> dict[str, Any] | None:
        """SIGTERM one prefork pool child."""
        return self._signal_child(signal.SIGTERM)

    def beat_kill(self) -> dict[str, Any]:
        """SIGKILL the beat, leave it dead 1-5 s, start a new one."""
        pid = self.beat.kill()
        time.sleep(self.rng.uniform(1, 5))
        self.beat.start()
        return {"pid": pid, "new_pid": self.beat.process.pid if self.beat.process else None}

    # ------------------------------------------------------------------ Redis

    def client_kill(self) -> dict[str, Any]:
        """A storm: every client connection (workers', beat's, the driver's) killed every 20 ms
        for 0.5-2 s."""
        admin = self.server.client()
        killed = 0
        until = time.monotonic() + self.rng.uniform(0.5, 2)
        while time.monotonic() < until:
            killed += int(admin.client_kill_filter(_type="normal", skipme=True))
            time.sleep(0.02)
        admin.close()
        return {"killed": killed}

    def client_pause(self) -> dict[str, Any]:
        """CLIENT PAUSE ALL for 0.5-3 s: every command of every client waits."""
        pause_ms = self.rng.randint(500, 3000)
        admin = self.server.client()
        admin.client_pause(pause_ms)
        admin.close()
        time.sleep(pause_ms / 1000)
        return {"pause_ms": pause_ms}

    def redis_restart(self) -> dict[str, Any]:
        """Stop Redis (SIGTERM) and start it on the same port and AOF; proven by a new run id."""
        before = self.server.client().info("server")["run_id"]
        self.server.restart()
        after = self.server.client().info("server")["run_id"]
        return {"run_id_before": before, "run_id_after": after, "restarted": before != after}

    def link_cut(self) -> dict[str, Any] | None:
        """Pull a worker host's cable (a network namespace's veth link) for 1-5 s."""
        return self.cut_link(self.rng) if self.cut_link is not None else None


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False
