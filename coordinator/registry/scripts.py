"""Loads the registry's Lua scripts (each with the shared `_lib.lua` and `_groups.lua` in front)
once per client."""

from __future__ import annotations

from functools import cache
from importlib import resources

import redis
import redis.asyncio
from redis.commands.core import Script

SCRIPT_NAMES = (
    "enqueue",
    "start",
    "finish",
    "cancel",
    "retry",
    "change_priority",
    "promote",
    "release",
    "recover_stalled",
    "recover_orphans",
    "progress",
    "remove_finished",
    "claim_outbox",
    "take",
    "renew",
    "flow_add_waiter",
    "flow_depend",
    "flow_settle",
    "flow_rearm",
    "flow_batch_add",
    "flow_batch_settle",
    "group_release",
    "release_capped",
)


@cache
def script_source(name: str) -> str:
    """The full text sent to Redis: the shared functions, then the script."""
    lua = resources.files("coordinator.registry") / "lua"
    return "\n".join((lua / f"{part}.lua").read_text() for part in ("_lib", "_groups", name))


class Scripts:
    """The registry's scripts bound to one Redis client, sync or asyncio (EVALSHA, loaded on first use)."""

    def __init__(self, client: redis.Redis | redis.asyncio.Redis) -> None:
        for name in SCRIPT_NAMES:
            setattr(self, name, client.register_script(script_source(name)))

    enqueue: Script
    start: Script
    finish: Script
    cancel: Script
    retry: Script
    change_priority: Script
    promote: Script
    release: Script
    recover_stalled: Script
    recover_orphans: Script
    progress: Script
    remove_finished: Script
    claim_outbox: Script
    take: Script
    renew: Script
    flow_add_waiter: Script
    flow_depend: Script
    flow_settle: Script
    flow_rearm: Script
    flow_batch_add: Script
    flow_batch_settle: Script
    group_release: Script
    release_capped: Script
