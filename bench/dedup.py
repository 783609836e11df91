"""``python -m bench.dedup``: the cost of a deduplicated enqueue against a plain one.

One dedicated `redis-server` (see `bench.server`), one coordinator, no worker. Each round runs
N sequential `enqueue_job` calls of each kind, the kinds taking turns every 100 calls so load on
a shared machine hits every kind alike; jobs/s are medians over the rounds, Redis commands and
redis-server CPU per call (read around each turn) totals over them; ratios are against ``plain``:

    plain        enqueue_job(q, data)
    priority     enqueue_job(q, data, priority=1): the cost of any option (its JobOptions is built)
    dedup-new    dedup=Dedup(key=<unique>): every call takes a new key (the check + the write)
    dedup-hit    dedup=Dedup(key="same"): one job, then N-1 calls that return it (deduplicated)
    fields-hit   dedup=Dedup(fields=["user"]): the same, with the key derived from the data
    debounce-hit dedup=Dedup(key="same", mode="debounce", ttl_ms=60000): each call replaces the data
                 and pushes the start back

``--plain-only`` runs the first kind alone (it works on a tree without deduplication, for a
before/after comparison of the plain enqueue path).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from bench.server import Counters, DedicatedRedis
from coordinator import JobQueueCoordinator

PAYLOAD = {"user": "u-7", "text": "x" * 80}
#: Calls of one kind before the next kind takes its turn.
CHUNK = 100


def _kinds(plain_only: bool) -> dict[str, Callable[[JobQueueCoordinator, str, int], Any]]:
    kinds: dict[str, Callable[[JobQueueCoordinator, str, int], Any]] = {
        "plain": lambda coord, q, i: coord.enqueue_job(q, PAYLOAD),
    }
    if plain_only:
        return kinds
    from coordinator import Dedup

    run_id = uuid.uuid4().hex[:8]
    same = Dedup(key=f"same-{run_id}")
    fields = Dedup(fields=["user"])
    debounce = Dedup(key=f"deb-{run_id}", mode="debounce", ttl_ms=60_000)
    kinds["priority"] = lambda coord, q, i: coord.enqueue_job(q, PAYLOAD, priority=1)
    kinds["dedup-new"] = lambda coord, q, i: coord.enqueue_job(q, PAYLOAD, dedup=Dedup(key=f"k-{run_id}-{i}"))
    kinds["dedup-hit"] = lambda coord, q, i: coord.enqueue_job(q, PAYLOAD, dedup=same)
    kinds["fields-hit"] = lambda coord, q, i: coord.enqueue_job(q, PAYLOAD, dedup=fields)
    kinds["debounce-hit"] = lambda coord, q, i: coord.enqueue_job(q, {**PAYLOAD, "i": i}, dedup=debounce)
    return kinds


def measure(jobs: int, rounds: int, plain_only: bool) -> dict[str, Any]:
    """Jobs/s (medians over ``rounds``), Redis commands and redis-server CPU per call of each kind.

    Within a round the kinds take turns every `CHUNK` calls, so a burst of load from elsewhere
    on the machine falls on all of them alike; the Redis counters are read around each chunk."""
    kinds = _kinds(plain_only)
    rates: dict[str, list[float]] = {kind: [] for kind in kinds}
    commands = dict.fromkeys(kinds, 0)
    cpu_s = dict.fromkeys(kinds, 0.0)
    with DedicatedRedis() as server:
        client = server.client()
        with JobQueueCoordinator(server.url, prefix="bench-dedup") as coord:
            for round_no in range(rounds):
                elapsed = dict.fromkeys(kinds, 0.0)
                for kind, call in kinds.items():
                    coord.create_queue(f"{kind}-{round_no}")
                    call(coord, f"{kind}-{round_no}", -1)  # warm: config cache, scripts
                for chunk in range(0, jobs, CHUNK):
                    for kind, call in kinds.items():
                        queue = f"{kind}-{round_no}"
                        before = Counters.read(client)
                        started = time.perf_counter()
                        for i in range(chunk, min(jobs, chunk + CHUNK)):
                            call(coord, queue, i)
                        elapsed[kind] += time.perf_counter() - started
                        after = Counters.read(client)
                        commands[kind] += sum(after.since(before).commands.values())
                        cpu_s[kind] += after.cpu_s - before.cpu_s
                for kind in kinds:
                    rates[kind].append(jobs / elapsed[kind])
                    coord.delete_queue(f"{kind}-{round_no}")
    calls = jobs * rounds
    medians = {kind: round(statistics.median(values), 1) for kind, values in rates.items()}
    cpu_us = {kind: round(cpu_s[kind] * 1e6 / calls, 1) for kind in kinds}
    return {
        "jobs": jobs, "rounds": rounds, "jobs_per_s": medians,
        "commands_per_call": {kind: round(commands[kind] / calls, 2) for kind in kinds},
        "redis_cpu_us_per_call": cpu_us,
        "ratio_to_plain": {kind: round(rate / medians["plain"], 3) for kind, rate in medians.items()},
        "redis_cpu_ratio_to_plain": {kind: round(us / cpu_us["plain"], 3) for kind, us in cpu_us.items()},
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.dedup", description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000, help="calls per kind and round (N)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; figures are medians")
    parser.add_argument("--plain-only", action="store_true", help="only the plain enqueue (before/after runs)")
    args = parser.parse_args(argv)
    result = measure(args.jobs, args.rounds, args.plain_only)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
