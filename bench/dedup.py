"""``python -m bench.dedup``: the cost of a deduplicated enqueue against a plain one.

One dedicated `redis-server` (see `bench.server`), one coordinator, no worker. Each round runs,
one after the other, N sequential `enqueue_job` calls of each kind, so load on a shared machine
hits every kind alike; figures (jobs/s, Redis commands and redis-server CPU per call) are medians
over the rounds, and ratios are against ``plain``:

    plain        enqueue_job(q, data)
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
    kinds["dedup-new"] = lambda coord, q, i: coord.enqueue_job(q, PAYLOAD, dedup=Dedup(key=f"k-{run_id}-{i}"))
    kinds["dedup-hit"] = lambda coord, q, i: coord.enqueue_job(q, PAYLOAD, dedup=same)
    kinds["fields-hit"] = lambda coord, q, i: coord.enqueue_job(q, PAYLOAD, dedup=fields)
    kinds["debounce-hit"] = lambda coord, q, i: coord.enqueue_job(q, {**PAYLOAD, "i": i}, dedup=debounce)
    return kinds


def measure(jobs: int, rounds: int, plain_only: bool) -> dict[str, Any]:
    """Jobs/s and Redis commands per call of each kind (medians over ``rounds``)."""
    rates: dict[str, list[float]] = {}
    cpu_us: dict[str, list[float]] = {}
    commands: dict[str, float] = {}
    with DedicatedRedis() as server:
        client = server.client()
        with JobQueueCoordinator(server.url, prefix="bench-dedup") as coord:
            for round_no in range(rounds):
                for kind, call in _kinds(plain_only).items():
                    queue = f"{kind}-{round_no}"
                    coord.create_queue(queue)
                    call(coord, queue, -1)  # warm: config cache, scripts
                    before = Counters.read(client)
                    started = time.perf_counter()
                    for i in range(jobs):
                        call(coord, queue, i)
                    elapsed = time.perf_counter() - started
                    after = Counters.read(client)
                    delta = after.since(before)
                    rates.setdefault(kind, []).append(jobs / elapsed)
                    cpu_us.setdefault(kind, []).append((after.cpu_s - before.cpu_s) * 1e6 / jobs)
                    commands[kind] = round(sum(delta.commands.values()) / jobs, 2)
                    coord.delete_queue(queue)
    medians = {kind: round(statistics.median(values), 1) for kind, values in rates.items()}
    redis_us = {kind: round(statistics.median(values), 1) for kind, values in cpu_us.items()}
    return {
        "jobs": jobs, "rounds": rounds, "jobs_per_s": medians, "commands_per_call": commands,
        "redis_cpu_us_per_call": redis_us,
        "ratio_to_plain": {kind: round(rate / medians["plain"], 3) for kind, rate in medians.items()},
        "redis_cpu_ratio_to_plain": {kind: round(us / redis_us["plain"], 3) for kind, us in redis_us.items()},
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
