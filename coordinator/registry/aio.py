"""`AsyncRegistry`: runs the registry's sans-IO operations (`ops`, `sweep_ops`) with redis.asyncio,
so an event loop never waits on a socket: the same scripts, keys and reply parsing as `Registry`."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import redis.asyncio

from coordinator.registry.calls import UNLINK_BATCH, Batch, Call, Command, Op, Script, UnlinkMatching, step
from coordinator.registry.ops import RegistryOps
from coordinator.registry.scripts import Scripts
from coordinator.registry.sweep_ops import SweepOps

T = TypeVar("T")


class AsyncRegistry:
    """The registry of one prefix over a redis.asyncio client: ``await registry.run(registry.ops.x(...))``."""

    def __init__(self, client: redis.asyncio.Redis, ops: RegistryOps) -> None:
        self.client = client
        self.ops = ops
        self.sweeps = SweepOps(ops)
        self.scripts = Scripts(client)

    async def run(self, op: Op[T], first: Call | None = None) -> T:
        """Drive a sans-IO operation to its result (see `calls`); ``first``: its first request,
        when the caller already started it (to raise its validation errors at once)."""
        call, result = (first, None) if first is not None else step(op, None, None)
        while call is not None:
            try:
                reply, error = await self.execute(call), None
            except Exception as exc:  # handed to the operation, which may retry or re-raise
                reply, error = None, exc
            call, result = step(op, reply, error)
        return result  # type: ignore[return-value]

    async def execute(self, call: Call) -> Any:
        """Send one request and return its reply."""
        if isinstance(call, Script):
            return await getattr(self.scripts, call.name)(keys=call.keys, args=call.args)
        if isinstance(call, Command):
            return await getattr(self.client, call.name)(*call.args, **call.kwargs)
        if isinstance(call, Batch):
            pipe = self.client.pipeline(transaction=call.transaction)
            for command in call.commands:
                if isinstance(command, Script):  # redis.asyncio: queued when awaited
                    await getattr(self.scripts, command.name)(keys=command.keys, args=command.args, client=pipe)
                else:
                    getattr(pipe, command.name)(*command.args, **command.kwargs)
            return await pipe.execute()
        if isinstance(call, UnlinkMatching):
            count, batch = 0, []
            async for key in self.client.scan_iter(match=call.pattern, count=1000):
                batch.append(key)
                if len(batch) >= UNLINK_BATCH:
                    count += await self.client.unlink(*batch)
                    batch.clear()
            return count + (await self.client.unlink(*batch) if batch else 0)
        await asyncio.sleep(call.seconds)
        return None
