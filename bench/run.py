"""Run the benchmark: coordinator and raw Celery side by side on one dedicated Redis.

    python -m bench                      # N = 20,000 jobs, medians of K = 3 runs, 1,000,000-job status
    python -m bench --jobs 5000 --runs 1
    python -m bench --quick              # smoke run: a few seconds per phase

Prints a table and writes bench/results/bench-<time>.json. See BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import celery
import kombu
import psutil
import redis

from bench import celery_side
from bench.report import markdown_table, print_table, targets
from bench.server import Counters, DedicatedRedis
from bench.memory import measure_memory
from bench.peers import PEERS, PeerSubject, available
from bench.subjects import (PAYLOAD, THREADS, CelerySubject, CoordinatorSubject, GroupedCoordinatorSubject,
                            default_log_dir, tree_cpu, tree_rss, wait_finished)
from bench.status import measure_status

RESULTS_DIR = Path(__file__).parent / "results"
SUBJECTS = ("coordinator", "coordinator-grouped", "celery-defaults", "celery-same", *PEERS)

Subject = CoordinatorSubject | CelerySubject | PeerSubject


def processing(subject: Subject, server: DedicatedRedis, jobs: int, label: str, out: dict[str, Any],
               **pool: Any) -> None:
    """Start a worker on a pre-filled queue; the time to the N-th completion, CPU, commands."""
    client = server.client()
    before = Counters.read(client)
    started = time.monotonic()
    subject.start_worker(**pool)
    ended, polls = wait_finished(subject, jobs, timeout=max(120, jobs / 50))
    after = Counters.read(client)
    out[f"{label}_rate"] = jobs / (ended - started)
    # CPU per job is steadier than the rate on a shared machine: the worker's and Redis's CPU time
    out[f"{label}_cpu_ms_per_job"] = tree_cpu(subject.worker_pids) * 1000 / jobs
    out[f"{label}_redis_cpu_ms_per_job"] = (after.cpu_s - before.cpu_s) * 1000 / jobs
    out[f"{label}_cost"] = after.since(before, {subject.poll_command: polls}).per_job(jobs)
    out[f"{label}_worker_rss"] = tree_rss(subject.worker_pids)


def run_subject(subject: Subject, server: DedicatedRedis, jobs: int, samples: int) -> dict[str, Any]:
    """One run of every phase for one subject; the queue is empty before and after."""
    client = server.client()
    out: dict[str, Any] = {}
    is_celery = isinstance(subject, CelerySubject)

    # enqueue, one job per call: this also pre-fills the queue for the processing phase
    before = Counters.read(client)
    elapsed = subject.enqueue_phase(jobs)
    after = Counters.read(client)
    out["enqueue_rate"] = jobs / elapsed
    out["enqueue_cost"] = after.since(before).per_job(jobs)
    out["memory_per_waiting_job"] = (after.memory - before.memory) / jobs
    if is_celery:
        subject.fresh_app()

    processing(subject, server, jobs, "processing", out)

    # round trip latency, the worker warm and idle
    if not isinstance(subject, CoordinatorSubject):
        subject.wait_consuming()
    before = Counters.read(client)
    latencies = sorted(subject.round_trips(samples))
    after = Counters.read(client)
    out["round_trip_p50_ms"] = latencies[len(latencies) // 2]
    out["round_trip_p99_ms"] = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    out["round_trip_cost"] = after.since(before).per_job(samples)

    # retention: completed jobs left once the maintenance sweeps have trimmed (coordinator only)
    if isinstance(subject, CoordinatorSubject):
        deadline = time.monotonic() + 20
        while subject.retained_completed() > 1000 and time.monotonic() < deadline:
            time.sleep(0.2)
        out["retained_completed"] = subject.retained_completed()
    subject.stop_worker()
    subject.purge()
    if is_celery:
        subject.fresh_app()

    # bulk enqueue: enqueue_bulk, BullMQ's addBulk, RQ's enqueue_many; Celery's group() (no bulk)
    before = Counters.read(client)
    elapsed = subject.bulk_phase(jobs)
    after = Counters.read(client)
    out["bulk_rate"] = jobs / elapsed
    out["bulk_cost"] = after.since(before).per_job(jobs)

    # the threads pool on the queue the bulk phase filled (Celery and the coordinator only)
    if not isinstance(subject, PeerSubject):
        if is_celery:
            subject.fresh_app()
        processing(subject, server, jobs, "threads", out, pool="threads", concurrency=THREADS)
        subject.stop_worker()
    subject.purge()
    if is_celery:
        subject.fresh_app()
    return out


def make_subject(name: str, server: DedicatedRedis, log_dir: Path) -> Subject:
    if name == "coordinator":
        return CoordinatorSubject(server.url)
    if name == "coordinator-grouped":
        return GroupedCoordinatorSubject(server.url)
    if name in PEERS:
        return PeerSubject(name, server.port, log_dir)
    return CelerySubject(name, log_dir)


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each number over the runs; command counts are those of the first run."""
    merged: dict[str, Any] = {}
    for key, value in runs[0].items():
        if isinstance(value, (int, float)):
            merged[key] = statistics.median(run[key] for run in runs)
        else:
            merged[key] = value
    return merged


def _subject(name: str, url: str, log_dir: Path) -> CoordinatorSubject | CelerySubject:
    if name == "coordinator":
        return CoordinatorSubject(url)
    if name == "adopted":  # imported here: its Celery app reads the dedicated Redis's port
        from bench.adopted import AdoptedSubject

        return AdoptedSubject(url)
    return CelerySubject(name, log_dir)


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_at_start": os.getloadavg(), "python": platform.python_version(),
        "platform": platform.platform(), "celery": celery.__version__, "kombu": kombu.__version__,
        "redis_py": redis.__version__,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per phase (N)")
    parser.add_argument("--runs", type=int, default=3, help="runs; figures are medians (K)")
    parser.add_argument("--samples", type=int, default=None, help="round trips per run (default N/20, max 1000)")
    parser.add_argument("--status-jobs", type=int, default=1_000_000, help="jobs in the large queue for get_queue_status")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1,000 jobs, 1 run, 20,000-job status queue")
    parser.add_argument("--only", nargs="*", default=None, help=f"subjects to run (default all: {' '.join(SUBJECTS)})")
    parser.add_argument("--output", type=Path, default=None, help="JSON file (default bench/results/bench-<time>.json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs, args.runs, args.status_jobs = 1000, 1, 20_000
    if args.samples is None:
        args.samples = max(50, min(1000, args.jobs // 20))
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    names = [name for name in args.only or SUBJECTS if name not in PEERS or name in available([name])]
    unknown = set(names) - set(SUBJECTS)
    if unknown:
        raise SystemExit(f"--only: unknown subject(s) {sorted(unknown)}; choose from {' '.join(SUBJECTS)}")
    result: dict[str, Any] = {
        "command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "jobs": args.jobs, "runs": args.runs, "samples": args.samples, "payload_bytes": len(PAYLOAD),
        "pool": "prefork -c 2", "threads": f"threads -c {THREADS}", "machine": machine(),
    }
    log_dir = default_log_dir()
    with DedicatedRedis() as server:
        os.environ[celery_side.PORT_ENV] = str(server.port)
        result["redis"] = server.client().info("server")["redis_version"]
        subjects = {name: make_subject(name, server, log_dir) for name in names}
        result["peer_pools"] = {name: s.pool for name, s in subjects.items() if isinstance(s, PeerSubject)}
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        failed: dict[str, str] = {}
        try:
            for run in range(args.runs):
                for name, subject in subjects.items():
                    if name in failed:
                        continue
                    print(f"run {run + 1}/{args.runs}: {name} ...", flush=True)
                    try:
                        runs[name].append(run_subject(subject, server, args.jobs, args.samples))
                    except Exception as exc:  # a peer that breaks leaves the others' figures standing
                        if name == "coordinator":
                            raise
                        failed[name] = f"{type(exc).__name__}: {exc}"
                        print(f"  {name} failed, left out: {failed[name]}", flush=True)
                        subject.stop_worker()
            if "coordinator" in subjects:
                print("memory per waiting job, by structure ...", flush=True)
                result["memory_breakdown"] = measure_memory(subjects["coordinator"], server, PAYLOAD)  # type: ignore[arg-type]
                print(f"get_queue_status with 100 and {args.status_jobs:,} jobs ...", flush=True)
                result["queue_status"] = measure_status(subjects["coordinator"], server, args.status_jobs)  # type: ignore[arg-type]
        finally:
            for subject in subjects.values():
                subject.close()
    result["runs_raw"] = runs
    result["failed"] = failed
    result["medians"] = {name: median_of(values) for name, values in runs.items() if values}
    result["targets"] = targets(result)
    print_table(result)
    output = args.output or RESULTS_DIR / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2, default=str))
    output.with_suffix(".md").write_text(markdown_table(result))
    print(f"\nwritten {output} (and the table as {output.with_suffix('.md').name})")
    return result
