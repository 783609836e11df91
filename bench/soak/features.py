"""Workload parts for groups, named limiters and dedup.

Every run holding a limiter or a group names it in its data (``hold``), so its processor writes
it to the history and the checker can count how many held it at once (`checker.check_limits`).
Calls that set a maximum are written with ``limit`` and ``max``.
"""

from __future__ import annotations

from bench.soak.workload import Workload
from coordinator import Dedup, GroupConfig

LIMITER = "api:soak"
LIMITER_MAX = 2
GROUPS = ("tenant-1", "tenant-2")
GROUP_CONCURRENCY = 1
DEDUP_KEYS = 2


def plug_features(workload: Workload) -> list[str]:
    """Set the limiter and the groups' configs, add their operations to the mix; returns a note
    per part for the report."""
    coord = workload.coord
    workload.call("set_limiter", lambda: coord.set_limiter(LIMITER, max_concurrent=LIMITER_MAX),
                  lambda _: {}, limit=LIMITER, max=LIMITER_MAX)
    workload.plug("limited", 8, _limited)
    for group in GROUPS:
        _set_group(workload, group)
    workload.plug("grouped", 8, _grouped)
    workload.plug("dedup", 10, _dedup)
    return [f"named limiter {LIMITER} (max {LIMITER_MAX}), groups {', '.join(GROUPS)} (concurrency "
            f"{GROUP_CONCURRENCY}), dedup (until_finished, ttl, debounce; {DEDUP_KEYS} keys each): on"]


def _set_group(workload: Workload, group: str) -> None:
    config = GroupConfig(concurrency=GROUP_CONCURRENCY)
    workload.call("set_group_config", lambda: workload.coord.set_group_config(workload.main, group, config),
                  lambda _: {}, limit=f"group:{group}", max=GROUP_CONCURRENCY)


def _limited(workload: Workload) -> int:
    workload.enqueue(workload.main, {"do": "ok", "ms": workload.rng.randint(300, 800), "hold": [LIMITER]},
                     "completed", "limited", limits=[LIMITER])
    return 1


def _grouped(workload: Workload) -> int:
    group = workload.rng.choice(GROUPS)
    workload.enqueue(workload.main, {"do": "ok", "ms": workload.rng.randint(50, 300), "hold": [f"group:{group}"]},
                     "completed", "grouped", group=group)
    return 1


def _dedup(workload: Workload) -> int:
    mode = workload.rng.choice(["until_finished", "ttl", "debounce"])
    key = f"{mode}-{workload.rng.randrange(DEDUP_KEYS)}"
    ttl = {} if mode == "until_finished" else {"ttl_ms": workload.rng.randint(300, 1500)}
    workload.enqueue(workload.main, {"do": "ok", "ms": workload.ms()}, "completed", "dedup",
                     dedup=Dedup(key=key, mode=mode, **ttl))
    return 1
