"""One soak run: its own `redis-server` (AOF, ``appendfsync always``), managed workers, a beat,
the paced workload and the fault injector; then quiet, the registry's final word, the checker,
the report.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.soak import tasks
from bench.soak.checker import Verdict, check
from bench.soak.faults import Beat, Injector
from bench.soak.features import plug_features
from bench.soak.history import HISTORY_ENV, History, read_history
from bench.soak.netlink import LinkHosts, netns_unavailable
from bench.soak.truth import memory_without_streams, quiet, read_truth, trim_all
from bench.soak.workload import Workload, pace
from coordinator import JobQueueCoordinator, QueueConfig, WorkerOptions
from coordinator.redis_server import RedisServer

PREFIX = "jqcsoak"
WORKER = WorkerOptions(pool="prefork", concurrency=2, embed_beat=False, max_restarts=1000)
#: Jobs of the capacity probe (the workload's own mix, sent unpaced, no faults).
PROBE_JOBS = 80
TICK_EVERY_MS = 2000
#: How long the system may take to finish its jobs once the workload and the faults stopped.
QUIET_TIMEOUT_S = 120


@dataclass
class Options:
    minutes: float
    seed: int
    capacity: float | None = None
    load: float = 0.8
    workers: int = 2
    netns: bool = True
    out: Path | None = None


@dataclass
class Result:
    verdict: Verdict
    capacity: float
    rate: float
    jobs: int
    history: Path
    notes: list[str] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)
    memory: tuple[int, int] = (0, 0)
    quiet_s: float = 0.0


def soak(options: Options) -> Result:
    """Run the soak and check it; the history file stays for a replay of the checker."""
    workdir = Path(options.out or tempfile.mkdtemp(prefix="jqc-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    history_path = workdir / "history.jsonl"
    history_path.unlink(missing_ok=True)
    unavailable: dict[str, str] = {}
    reason = netns_unavailable() if options.netns else "turned off (--no-netns)"
    if reason:
        unavailable["link_cut"] = reason
    hosts = LinkHosts(1) if not reason else None
    server = RedisServer("--appendonly", "yes", "--appendfsync", "always",
                         *(hosts.redis_args() if hosts else []))
    with (hosts or _Nothing()), server:
        os.environ.update({HISTORY_ENV: str(history_path), tasks.REDIS_ENV: server.url})
        tasks.app.conf.update(broker_url=server.url, result_backend=server.url)
        history = History(history_path)
        rng = random.Random(options.seed)
        coord = JobQueueCoordinator(server.url, prefix=PREFIX, app=tasks.app, **tasks.SETTINGS)
        beat = Beat({**os.environ, "REDIS_URL": server.url, "JQC_PREFIX": PREFIX, "PYTHONPATH": _pythonpath()},
                    str(workdir / "beat.log"))
        try:
            return _run(options, coord, server, history, rng, beat, hosts, unavailable, workdir)
        finally:
            beat.stop()
            if hosts:
                hosts.stop_workers()
            coord.shutdown(timeout=20)
            history.close()


def _run(options: Options, coord: JobQueueCoordinator, server: RedisServer, history: History,
         rng: random.Random, beat: Beat, hosts: LinkHosts | None, unavailable: dict[str, str],
         workdir: Path) -> Result:
    history_path = workdir / "history.jsonl"
    workload = Workload(coord, history, rng)
    queues = [workload.main, workload.adopted]
    for queue in queues:
        coord.create_queue(QueueConfig(name=queue, retention={"completed_count": 1_000_000,
                                                             "failed_count": 1_000_000}))
    tasks.app.conf.task_routes = {"soak.*": {"queue": coord.celery_queue(workload.adopted)}}
    tasks.app.amqp.flush_routes()
    tasks.app.amqp.__dict__.pop("router", None)
    for _ in range(options.workers):
        coord.register_worker(workload.main, tasks.run, WORKER)
    coord.register_worker(workload.adopted, None, WORKER)
    if hosts:
        hosts.start_workers(server.port, PREFIX, workload.main, "bench.soak.tasks:run", workdir)
    features = plug_features(workload)
    beat.start()
    workload.call("schedule_recurring", lambda: coord.schedule_recurring_job(
        workload.main, "tick", {"do": "ok", "ms": 20}, every=TICK_EVERY_MS, key="tick"), lambda _: {})
    admin = server.client()
    baseline = memory_without_streams(coord, admin, queues)

    capacity = options.capacity or probe(workload, coord, queues)
    rate = capacity * options.load
    injector = Injector(coord, server, history, random.Random(options.seed * 7919 + 1), beat,
                        cut_link=hosts.cut if hosts else None, unavailable=unavailable)
    injector.start()
    pace(workload, rate, options.minutes * 60, lambda: False)
    injector.stop()
    workload.call("remove_recurring", lambda: coord.remove_recurring_job(workload.main, "tick"),
                  lambda removed: {"returned": removed})
    settle_s = quiet(coord, queues, timeout_s=QUIET_TIMEOUT_S)
    known = {}
    for line in read_history(history_path):
        if line.get("k") == "call" and line.get("ok"):
            for job_id in line.get("jobs") or {}:
                known[job_id] = line.get("q") or workload.main
    truth = read_truth(coord, queues, known)
    truth.leftover_jobs = trim_all(coord, queues)
    truth.memory_baseline, truth.memory_final = baseline, memory_without_streams(coord, server.client(), queues)
    (workdir / "truth.json").write_text(json.dumps(dataclasses.asdict(truth), default=str))
    verdict = check(read_history(history_path), truth)
    notes = features + [f"fault injector: {error}" for error in injector.errors]
    return Result(verdict, capacity, rate, len(truth.jobs), history_path, notes, unavailable,
                  (truth.memory_baseline, truth.memory_final), settle_s)


def probe(workload: Workload, coord: JobQueueCoordinator, queues: list[str]) -> float:
    """Jobs a second this machine runs of the workload's own mix: ``PROBE_JOBS`` sent at once, no
    faults, timed until the queues are quiet."""
    started = time.monotonic()
    while workload.sent < PROBE_JOBS:
        workload.step()
    while workload._cancels:
        time.sleep(0.05)
        workload.cancel_due()
    quiet(coord, queues, timeout_s=120)
    took = time.monotonic() - started - 2  # quiet() looks twice, a second apart, after the last job
    sent, workload.sent = workload.sent, 0
    return sent / max(took, 1.0)


def _pythonpath() -> str:
    return os.pathsep.join(dict.fromkeys(p or os.getcwd() for p in sys.path))


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
