"""Fan-in latency: from the last child's completion to the parent's start.

    python -m bench.fanin                # 100 children, 5 rounds per side
    python -m bench.fanin --children 1000 --rounds 3

Coordinator: a flow (parent in queue ``fanin-parent``, children in ``fanin-children``), children
on a managed prefork worker of 2 processes, the parent on a solo worker. Celery: a ``chord`` of the
same children with the callback, on one prefork worker of 2 processes, Redis as broker and result
backend (Celery's native Redis chord: a counter per chord, no ``chord_unlock`` polling; backends
without it poll every second). Both on one dedicated Redis. Also the time ``add_flow`` takes for a
wide fan, and its longest single script call (how long Redis is blocked at most).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from celery import chord

from bench.server import DedicatedRedis
from bench.subjects import default_log_dir
from coordinator import FlowJob, JobQueueCoordinator
from coordinator.workers.process import stop as stop_process

RESULTS_DIR = Path(__file__).parent / "results"


def coordinator_side(url: str, children: int, rounds: int) -> list[float]:
    from bench import fanin_tasks

    coord = JobQueueCoordinator(url, prefix="fanin")
    coord.create_queue("fanin-children")
    coord.create_queue("fanin-parent")
    coord.register_worker("fanin-children", fanin_tasks.child, pool="prefork", concurrency=2)
    coord.register_worker("fanin-parent", fanin_tasks.parent, pool="solo")
    latencies = []
    try:
        for _ in range(rounds):
            node = coord.add_flow(FlowJob(queue="fanin-parent", children=[
                FlowJob(queue="fanin-children", data=i) for i in range(children)]))
            done = coord.wait_for_job("fanin-parent", node.job.id, timeout=300)
            latencies.append((done.result["started"] - done.result["last_child"]) * 1000)
    finally:
        coord.shutdown(timeout=30)
    return latencies


def celery_side(children: int, rounds: int) -> list[float]:
    from bench import fanin_tasks

    log = open(default_log_dir() / "fanin-celery.log", "ab")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "bench.fanin_tasks:app", "worker", "-P", "prefork", "-c", "2",
         "-l", "WARNING"], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    latencies = []
    try:
        fanin_tasks.app.control.ping(timeout=10)
        for _ in range(rounds):
            header = [fanin_tasks.celery_child.s(i) for i in range(children)]
            result = chord(header)(fanin_tasks.celery_callback.s()).get(timeout=300)
            latencies.append((result["started"] - result["last_child"]) * 1000)
    finally:
        stop_process(worker, timeout=30)
        log.close()
    return latencies


def wide_add(url: str, children: int) -> dict[str, float]:
    """Time of add_flow for a wide fan, and the longest single script call it made."""
    coord = JobQueueCoordinator(url, prefix="fanin-wide")
    coord.create_queue("wide-parent")
    coord.create_queue("wide-children")
    longest = 0.0
    calls = 0
    scripts = coord.registry.scripts
    for name in ("enqueue", "flow_add_waiter", "flow_depend"):
        original = getattr(scripts, name)

        def timed(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            nonlocal longest, calls
            started = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                longest = max(longest, time.perf_counter() - started)
                calls += 1
        setattr(scripts, name, timed)
    started = time.perf_counter()
    coord.add_flow(FlowJob(queue="wide-parent", children=[FlowJob(queue="wide-children", data=i)
                                                          for i in range(children)]))
    total = time.perf_counter() - started
    coord.delete_queue("wide-children")
    coord.delete_queue("wide-parent")
    coord.shutdown()
    return {"children": children, "add_flow_s": total, "script_calls": calls, "longest_call_ms": longest * 1000}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.fanin", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--children", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--wide", type=int, default=10_000, help="children of the add_flow timing")
    args = parser.parse_args(argv)
    with DedicatedRedis() as server:
        os.environ["BENCH_REDIS_PORT"] = str(server.port)
        wide = wide_add(server.url, args.wide)
        ours = coordinator_side(server.url, args.children, args.rounds)
        theirs = celery_side(args.children, args.rounds)
    result = {
        "command": "python -m bench.fanin " + " ".join(argv if argv is not None else sys.argv[1:]),
        "children": args.children, "rounds": args.rounds, "load_average": os.getloadavg(),
        "coordinator_ms": ours, "celery_chord_ms": theirs,
        "coordinator_median_ms": statistics.median(ours), "celery_chord_median_ms": statistics.median(theirs),
        "wide_add": wide,
    }
    print(f"last child done -> parent started, median of {args.rounds} rounds of {args.children} children:")
    print(f"  coordinator flow   {result['coordinator_median_ms']:8.1f} ms   {[round(x, 1) for x in ours]}")
    print(f"  Celery chord       {result['celery_chord_median_ms']:8.1f} ms   {[round(x, 1) for x in theirs]}")
    print(f"add_flow of {wide['children']:,} children: {wide['add_flow_s']:.2f} s in {wide['script_calls']} "
          f"script calls, longest {wide['longest_call_ms']:.1f} ms")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    output = RESULTS_DIR / f"fanin-{time.strftime('%Y%m%d-%H%M%S')}.json"
    output.write_text(json.dumps(result, indent=2))
    print(f"written {output}")
    return result


if __name__ == "__main__":
    main()
