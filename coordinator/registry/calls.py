"""What a registry operation asks of Redis, without doing it (sans-IO).

An operation (`RegistryOps`) is a generator: it yields `Script`, `Command`, `Batch` or `Sleep`
requests and receives each reply (or has the request's exception thrown into it), then returns
its result. An executor drives it: `Registry.run` with redis-py, `AsyncRegistry.run` with
redis.asyncio. Both send the very same requests, so the sync and async clients share every key,
argument and reply parser, and operations compose with ``yield from``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Script:
    """EVALSHA of one of the registry's Lua scripts (`scripts.SCRIPT_NAMES`)."""

    name: str
    keys: list[str]
    args: list[Any]


@dataclass(frozen=True, slots=True)
class Command:
    """One Redis command, by its redis-py method name (the same on the sync and async clients)."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Batch:
    """Commands (and scripts) sent in one round trip (a pipeline; MULTI/EXEC with
    ``transaction``); the reply is the list of their replies."""

    commands: list[Command | Script]
    transaction: bool = False


@dataclass(frozen=True, slots=True)
class UnlinkMatching:
    """UNLINK every key matching ``pattern``, found with SCAN in batches (the client's own
    `scan_iter`, which also walks every node of a Redis Cluster); the reply is how many."""

    pattern: str


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait before the next request (time.sleep or asyncio.sleep); the reply is None."""

    seconds: float


Call = Script | Command | Batch | UnlinkMatching | Sleep
#: Keys unlinked per command by `UnlinkMatching`.
UNLINK_BATCH = 500
#: A registry operation returning ``T``.
Op = Generator[Call, Any, T]


def cmd(name: str, *args: Any, **kwargs: Any) -> Command:
    """A `Command` of redis-py method ``name`` with its arguments."""
    return Command(name, args, kwargs)


def step(op: Op[T], reply: Any, error: BaseException | None) -> tuple[Call | None, T | None]:
    """Advance ``op`` with the last reply (or error): the next request, or (None, its result)."""
    try:
        return (op.throw(error) if error is not None else op.send(reply)), None
    except StopIteration as done:
        return None, done.value


def run_sync(execute: Callable[[Call], Any], op: Op[T]) -> T:
    """Drive ``op`` to its result, sending each request with ``execute`` (blocking)."""
    call, result = step(op, None, None)
    while call is not None:
        try:
            reply, error = execute(call), None
        except Exception as exc:  # handed to the operation, which may retry or re-raise
            reply, error = None, exc
        call, result = step(op, reply, error)
    return result  # type: ignore[return-value]


def queue_batch(pipe: Any, scripts: Any, batch: Batch) -> None:
    """Queue a `Batch`'s commands and scripts on a redis-py pipeline."""
    for command in batch.commands:
        if isinstance(command, Script):
            getattr(scripts, command.name)(keys=command.keys, args=command.args, client=pipe)
        else:
            getattr(pipe, command.name)(*command.args, **command.kwargs)


def execute_sync(client: Any, scripts: Any, call: Call) -> Any:
    """Send one request with a redis-py client (``scripts``: its `Scripts`, for `Script` calls)."""
    if isinstance(call, Script):
        return getattr(scripts, call.name)(keys=call.keys, args=call.args)
    if isinstance(call, Command):
        return getattr(client, call.name)(*call.args, **call.kwargs)
    if isinstance(call, Batch):
        pipe = client.pipeline(transaction=call.transaction)
        queue_batch(pipe, scripts, call)
        return pipe.execute()
    if isinstance(call, UnlinkMatching):
        count, batch = 0, []
        for key in client.scan_iter(match=call.pattern, count=1000):
            batch.append(key)
            if len(batch) >= UNLINK_BATCH:
                count += client.unlink(*batch)
                batch.clear()
        return count + (client.unlink(*batch) if batch else 0)
    time.sleep(call.seconds)
    return None
