"""Where a worker's time goes per job: py-spy on a managed worker (or raw Celery) emptying a queue.

    python -m bench.profile                         # coordinator, 3,000 jobs, prefork -c 2
    python -m bench.profile --subject celery-defaults --jobs 5000

Fills a queue on a dedicated Redis, starts the worker, records it with ``py-spy record
--subprocesses --idle`` (``pip install py-spy``; it needs ptrace rights) once it runs, and prints,
per process, the share of busy samples (leaf not waiting) under each frame. BENCHMARKS.md quotes it.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import celery_side
from bench.server import DedicatedRedis
from bench.subjects import PAYLOAD, CelerySubject, CoordinatorSubject, default_log_dir, wait_finished

#: Leaf frames that mean "waiting", not working.
IDLE_LEAVES = ("Condition.wait", "Connection._recv ", "_epoll.poll", "Service.start", "select", "sleep",
               "Event.wait", "_poll", "poll (", "read_from_socket", "_socket_can_read")


def record(subject_name: str, jobs: int, rate_hz: int, output: Path) -> float:
    """Run the worker on ``jobs`` queued jobs under py-spy; returns jobs/s."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    with DedicatedRedis() as server:
        os.environ[celery_side.PORT_ENV] = str(server.port)
        subject = (CoordinatorSubject(server.url) if subject_name == "coordinator"
                   else CelerySubject(subject_name, default_log_dir()))
        try:
            subject.enqueue_many([PAYLOAD] * jobs)
            if isinstance(subject, CelerySubject):
                subject.fresh_app()
            started = time.monotonic()
            subject.start_worker()
            time.sleep(1.0)  # past start-up
            profiler = subprocess.Popen([spy, "record", "-p", str(subject.worker_pid), "--subprocesses", "--idle",
                                         "-r", str(rate_hz), "-f", "raw", "-o", str(output), "--nonblocking"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            ended, _ = wait_finished(subject, jobs, timeout=max(120, jobs / 5))
            profiler.send_signal(2)
            profiler.wait(60)
            return jobs / (ended - started)
        finally:
            subject.close()


def summarize(raw: Path, top: int) -> str:
    """Per process: busy share of its samples, then the frames under which the busy samples fall."""
    total: collections.Counter[str] = collections.Counter()
    busy: collections.Counter[str] = collections.Counter()
    frames: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        parts = stack.split(";")
        processes = [part for part in parts if part.startswith("process ")]
        if not processes:
            continue
        pid = processes[-1].split(":")[0]
        names = [re.sub(r" \((.*?):\d+\)", r" (\1)", part) for part in parts if not part.startswith("process ")]
        loops = [i for i, name in enumerate(names) if name.startswith(("Worker.workloop", "asynloop"))]
        names = names[loops[-1]:] if loops else names  # drop the start-up frames every sample shares
        total[pid] += int(count)
        leaf = names[-1] if names else ""
        if any(leaf.startswith(idle) or idle in leaf for idle in IDLE_LEAVES):
            continue
        busy[pid] += int(count)
        for name in set(names):
            frames[pid][name] += int(count)
    out = []
    for pid in total:
        out.append(f"== {pid}: {total[pid]} samples, busy {100 * busy[pid] / total[pid]:.0f} %")
        for name, count in frames[pid].most_common(top):
            out.append(f"  {100 * count / max(1, busy[pid]):5.1f} %  {name}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subject", default="coordinator", choices=["coordinator", "celery-defaults", "celery-same"])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--rate", type=int, default=200, help="samples per second")
    parser.add_argument("--top", type=int, default=60, help="frames shown per process")
    args = parser.parse_args(argv)
    raw = Path(tempfile.gettempdir()) / f"jqc-profile-{args.subject}.txt"
    rate = record(args.subject, args.jobs, args.rate, raw)
    print(f"{args.subject}: {rate:,.0f} jobs/s while profiled; raw stacks in {raw}")
    print(summarize(raw, args.top))


if __name__ == "__main__":
    main()
