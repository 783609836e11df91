"""Groups of a queue and named limiters: their configs, pause flags and occupancy.

This module owns the group records (`QueueKeys.group_configs`, `group_paused`; the scripts in
`registry/lua/_groups.lua` keep the indexes, window and leases) and the named limiters
(`CoordinatorKeys.limiters`, `limiter_slots`). Its operations are sans-IO (run them with
`Registry.run` or `AsyncRegistry.run`); `GroupManager` runs them for the sync client. How the
round-robin and the caps work: docs/fairness.md.
"""

from __future__ import annotations

from typing import Any

from coordinator.clock import now_ms
from coordinator.errors import InvalidArgumentError
from coordinator.models import EventName, GroupConfig, GroupStatus, LimiterStatus, QueueConfig
from coordinator.registry import Registry
from coordinator.registry.calls import Batch, Op, cmd
from coordinator.registry.ops import RegistryOps
from coordinator.validation import check_group_name

#: Groups `get_queue_status` lists (those with the most waiting jobs), and the exporter labels.
GROUPS_SHOWN = 10
#: Priority levels a group's index holds (JobOptions.priority 1..10).
_PRIORITIES = range(1, 11)


class GroupOps:
    """The group and limiter operations, as sans-IO operations over the registry's `RegistryOps`."""

    def __init__(self, ops: RegistryOps) -> None:
        self.ops = ops

    def set_config_op(self, queue: str, group: str, config: GroupConfig) -> Op[None]:
        """Save a group's config (replacing the last one) and serve the group again at once."""
        check_group_name(group, "group")
        if not isinstance(config, GroupConfig):
            raise InvalidArgumentError(f"config: give a GroupConfig, not {type(config).__name__}")
        yield from self.ops.queue_meta(queue)
        yield cmd("hset", self.ops.queue_keys(queue).group_configs, group, config.model_dump_json(exclude_none=True))
        yield from self.ops.release_groups(queue, rejoin=group)

    def get_config_op(self, queue: str, group: str) -> Op[GroupConfig]:
        """A group's config (the defaults when none was set)."""
        check_group_name(group, "group")
        yield from self.ops.queue_meta(queue)
        raw = yield cmd("hget", self.ops.queue_keys(queue).group_configs, group)
        return GroupConfig.model_validate_json(raw) if raw else GroupConfig()

    def set_paused_op(self, queue: str, group: str, paused: bool) -> Op[None]:
        """Pause a group (none of its jobs is released to the broker; those already released run)
        or resume it (it rejoins the round-robin at once)."""
        check_group_name(group, "group")
        yield from self.ops.queue_meta(queue)
        qk = self.ops.queue_keys(queue)
        event = {"event": (EventName.GROUP_PAUSED if paused else EventName.GROUP_RESUMED).value,
                 "job_id": "", "group": group}
        if paused:
            yield Batch([cmd("sadd", qk.group_paused, group), cmd("zrem", qk.group_rotation, group),
                         self.ops._event(qk.events, event)], transaction=True)
        else:
            yield Batch([cmd("srem", qk.group_paused, group), self.ops._event(qk.events, event)], transaction=True)
            yield from self.ops.release_groups(queue, rejoin=group)

    def set_limiter_op(self, name: str, max_concurrent: int) -> Op[None]:
        """Create or change a named limiter: at most ``max_concurrent`` jobs holding it run at once."""
        check_group_name(name, "limiter name")
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int) or max_concurrent < 1:
            raise InvalidArgumentError(f"max_concurrent: give an int >= 1, not {max_concurrent!r}")
        yield cmd("hset", self.ops.keys.limiters, name, max_concurrent)

    def limiters_op(self) -> Op[list[LimiterStatus]]:
        """Every named limiter with the leases held now (expired ones not counted)."""
        maxima = yield cmd("hgetall", self.ops.keys.limiters)
        names = sorted(maxima)
        now = now_ms()
        held = yield Batch([cmd("zcount", self.ops.keys.limiter_slots(name), f"({now}", "+inf") for name in names])
        return [LimiterStatus(name=name, max_concurrent=int(maxima[name]), active=active)
                for name, active in zip(names, held)]

    def status_op(self, queue: str, config: QueueConfig, shown: int = GROUPS_SHOWN) -> Op[dict[str, Any]]:
        """The `QueueStatus` fields of groups and caps: the ``shown`` groups with the most waiting
        jobs, how many groups and grouped jobs wait, the queue's cap and its occupancy, jobs
        parked over a cap."""
        qk = self.ops.queue_keys(queue)
        now = now_ms()
        counts, paused, active, slots, capped = yield Batch([
            cmd("hgetall", qk.group_sizes), cmd("smembers", qk.group_paused), cmd("hgetall", qk.group_active),
            cmd("zcount", qk.slots, f"({now}", "+inf"), cmd("zcard", qk.capped),
        ])
        top = sorted(counts, key=lambda group: (-int(counts[group]), group))[:shown]
        firsts = yield Batch([
            cmd("zrangebylex", qk.group_waiting, f"[{group}\0{priority:02d}\0", f"({group}\0{priority:02d}\1",
                start=0, num=1)
            for group in top for priority in _PRIORITIES
        ])
        groups = []
        for index, group in enumerate(top):
            oldest = [float(member[0].split("\0")[2]) for member in
                      firsts[index * len(_PRIORITIES) : (index + 1) * len(_PRIORITIES)] if member]
            groups.append(GroupStatus(
                name=group, waiting=int(counts[group]), active=int(active.get(group, 0)), paused=group in paused,
                oldest_waiting_s=round((now - min(oldest)) / 1000, 3) if oldest else None,
            ))
        cap = None
        if config.concurrency is not None:
            cap = LimiterStatus(name="queue", max_concurrent=config.concurrency, active=slots)
        return {"groups": groups, "group_count": len(counts), "grouped_waiting": sum(map(int, counts.values())),
                "concurrency": cap, "capped": capped}


class GroupManager:
    """Groups of queues and named limiters for the sync client (see `GroupOps`)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.ops = GroupOps(registry.ops)

    def set_group_config(self, queue: str, group: str, config: GroupConfig) -> None:
        """Set a group's limits and weight; its jobs waiting now follow them at once."""
        self.registry.run(self.ops.set_config_op(queue, group, config))
        if self.registry.after_dispatch is not None:
            self.registry.after_dispatch(queue)

    def get_group_config(self, queue: str, group: str) -> GroupConfig:
        """A group's config (the defaults when none was set)."""
        return self.registry.run(self.ops.get_config_op(queue, group))

    def pause_group(self, queue: str, group: str) -> None:
        """Release none of the group's jobs until `resume_group` (the other groups go on)."""
        self.registry.run(self.ops.set_paused_op(queue, group, True))

    def resume_group(self, queue: str, group: str) -> None:
        """Serve the group again."""
        self.registry.run(self.ops.set_paused_op(queue, group, False))
        if self.registry.after_dispatch is not None:
            self.registry.after_dispatch(queue)

    def set_limiter(self, name: str, max_concurrent: int) -> None:
        """Create or change a named limiter shared by every queue of the prefix."""
        self.registry.run(self.ops.set_limiter_op(name, max_concurrent))

    def get_limiters(self) -> list[LimiterStatus]:
        """Every named limiter, with its occupancy."""
        return self.registry.run(self.ops.limiters_op())
