"""Workload parts for dedup, and for groups and named limiters where the coordinator has them
(`coord.set_limiter`, `coord.set_group_config`): each run says which parts ran and which were
left out, and why.

Every run holding a limiter or a group names it in its data (``hold``), so its processor writes
it to the history and the checker can count how many held it at once (`checker.check_limits`).
Calls that set a maximum are written with ``limit`` and ``max``.
"""

from __future__ import annotations

from typing import Any

import coordinator
from bench.soak.workload import Workload
from coordinator import Dedup

LIMITER = "api:soak"
LIMITER_MAX = 2
GROUPS = ("tenant-1", "tenant-2")
GROUP_CONCURRENCY = 1
DEDUP_KEYS = 2


def plug_features(workload: Workload) -> list[str]:
    """Add the parts this coordinator supports to the mix; returns a note per part (on or off)."""
    coord, notes = workload.coord, []
    if hasattr(coord, "set_limiter"):
        workload.call("set_limiter", lambda: coord.set_limiter(LIMITER, max_concurrent=LIMITER_MAX),
                      lambda _: {}, limit=LIMITER, max=LIMITER_MAX)
        workload.plug("limited", 4, _limited)
        notes.append(f"named limiter {LIMITER} (max {LIMITER_MAX}): on")
    else:
        notes.append("named limiters: off (coord.set_limiter is not in this build)")
    group_config = getattr(coordinator, "GroupConfig", None)
    if group_config is not None and hasattr(coord, "set_group_config"):
        for group in GROUPS:
            _set_group(workload, group_config, group)
        workload.plug("grouped", 5, _grouped)
        notes.append(f"groups {', '.join(GROUPS)} (concurrency {GROUP_CONCURRENCY}): on")
    else:
        notes.append("groups: off (coord.set_group_config / GroupConfig are not in this build)")
    workload.plug("dedup", 10, _dedup)
    notes.append(f"dedup (until_finished, ttl, debounce; {DEDUP_KEYS} keys each): on")
    return notes


def _set_group(workload: Workload, group_config: Any, group: str) -> None:
    config = group_config(concurrency=GROUP_CONCURRENCY)
    workload.call("set_group_config", lambda: workload.coord.set_group_config(  # type: ignore[attr-defined]
        workload.main, group, config), lambda _: {}, limit=f"group:{group}", max=GROUP_CONCURRENCY)


def _limited(workload: Workload) -> int:
    workload.enqueue(workload.main, {"do": "ok", "ms": workload.rng.randint(100, 400), "hold": [LIMITER]},
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
