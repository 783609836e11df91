"""What a registry operation asks of Redis, without doing it (sans-IO).

An operation (`RegistryOps`) is a generator: it yields `Script`, `Command`, `Batch` or `Sleep`
requests and receives each reply (or has the request's exception thrown into it), then returns
its result. An executor drives it: `Registry.run` with redis-py, `AsyncRegistry.run` with
redis.asyncio. Both send the very same requests, so the sync and async clients share every key,
argument and reply parser, and operations compose with ``yield from``.
"""

from __future__ import annotations

from collections.abc import Generator
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
    """Commands sent in one round trip (a pipeline; MULTI/EXEC with ``transaction``); the reply
    is the list of their replies."""

    commands: list[Command]
    transaction: bool = False


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait before the next request (time.sleep or asyncio.sleep); the reply is None."""

    seconds: float


Call = Script | Command | Batch | Sleep
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
