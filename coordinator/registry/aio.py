"""`AsyncRegistry`: runs the registry's sans-IO operations (`ops`, `sweep_ops`) with redis.asyncio,
so an event loop never waits on a socket: the same scripts, keys and reply parsing as `Registry`.

`AsyncRegistry.run_batched` lets many coroutines share round trips: the script calls and
commands that operations issue in one turn of the event loop go out as one pipeline (one write,
one read), each reply (or error) handed back to its own operation. An async worker claims and
finishes its jobs that way (`runtime.async_runner`).
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import redis.asyncio
from redis.exceptions import NoScriptError

from coordinator.connection import translated
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
        self._queued: list[tuple[Script | Command, asyncio.Future[Any]]] = []
        self._sending: set[asyncio.Task[None]] = set()

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

    async def run_batched(self, op: Op[T]) -> T:
        """`run`, but each script call or command of ``op`` joins those the other batched
        operations issue in the same turn of the loop: one pipeline (not a transaction) for all.
        Other requests (`Batch`, `Sleep`, ...) are sent on their own."""
        call, result = step(op, None, None)
        while call is not None:
            try:
                if isinstance(call, (Script, Command)):
                    reply, error = await self._queue(call), None
                else:
                    reply, error = await self.execute(call), None
            except Exception as exc:  # handed to the operation, which may retry or re-raise
                reply, error = None, exc
            call, result = step(op, reply, error)
        return result  # type: ignore[return-value]

    def _queue(self, call: Script | Command) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queued.append((call, future))
        if len(self._queued) == 1:  # the first of this turn: send them all once the turn is over
            task = loop.create_task(self._send_queued())
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        return future

    async def _send_queued(self) -> None:
        queued, self._queued = self._queued, []
        pipe = self.client.pipeline(transaction=False)
        for call, _ in queued:
            if isinstance(call, Script):  # by its SHA: a NOSCRIPT reply is sent again below, which loads it
                pipe.evalsha(getattr(self.scripts, call.name).sha, len(call.keys), *call.keys, *call.args)
            else:
                getattr(pipe, call.name)(*call.args, **call.kwargs)
        try:
            replies = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # Redis away: every queued request failed alike
            for _, future in queued:
                if not future.done():
                    future.set_exception(exc)
            return
        for (call, future), reply in zip(queued, replies):
            if isinstance(reply, NoScriptError):  # the script did not run: run it again, loading it
                try:
                    reply = await self.execute(call)
                except Exception as exc:
                    reply = exc
            if future.done():  # its coroutine was cancelled meanwhile
                continue
            if isinstance(reply, Exception):
                future.set_exception(self._translated(reply))
            else:
                future.set_result(reply)

    def _translated(self, exc: Exception) -> Exception:
        """A per-command error of a pipeline, as `connection.translated` turns it for one command."""
        settings = getattr(self.client, "coordinator_settings", None)
        if settings is None:
            return exc
        try:
            with translated(settings):
                raise exc
        except Exception as out:
            return out

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
