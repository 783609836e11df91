"""Job events: `Event` models read from each queue's capped stream, and the listener behind `on()`.

The registry's scripts append an event to ``QueueKeys.events`` in the same step as each state
move. Readers keep the id of the last event they saw and ask for what came after it, so a
dropped connection (or a restart with a saved id) resumes without a gap, as long as the stream
(capped at `Settings.events_max_len`) still holds that id.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import redis

from coordinator.connection import connect
from coordinator.errors import InvalidArgumentError, RedisUnavailableError
from coordinator.models import Event, EventName
from coordinator.registry import Registry
from coordinator.registry.aio import AsyncRegistry
from coordinator.registry.calls import Op, Sleep, execute_sync, run_sync
from coordinator.registry.ops import RegistryOps
from coordinator.settings import Settings

log = logging.getLogger(__name__)

#: Every event name (`EventName`): job, queue (paused, resumed) and worker events.
EVENT_NAMES = tuple(name.value for name in EventName)
#: `on("*", handler)` receives every event.
ALL_EVENTS = "*"

EventHandler = Callable[[Event], object]

_INT_FIELDS = ("attempt", "duration_ms", "due", "count")
_JSON_FIELDS = ("progress",)
#: Longest wait of one blocking read; also how soon a new subscription or `close()` takes effect.
BLOCK_MS = 500
#: Back-off bounds while Redis cannot be reached.
RETRY_MIN_S = 0.05
RETRY_MAX_S = 2.0
#: How often a listener with queue-less handlers looks for queues created since.
QUEUE_REFRESH_S = 1.0


def parse_event(queue: str, entry_id: str, fields: dict[str, str]) -> Event:
    """An `Event` from one stream entry; numeric and JSON extras are decoded."""
    data: dict[str, object] = {}
    for name, value in fields.items():
        if name in ("event", "job_id", "trace_id"):
            continue
        if name in _INT_FIELDS and value.lstrip("-").isdigit():
            data[name] = int(value)
        elif name in _JSON_FIELDS:
            try:
                data[name] = json.loads(value)
            except ValueError:
                data[name] = value
        else:
            data[name] = value
    millis = int(entry_id.split("-", 1)[0])
    return Event(
        id=entry_id, event=fields.get("event", ""), queue=queue, job_id=fields.get("job_id") or None,
        timestamp=datetime.fromtimestamp(millis / 1000, tz=timezone.utc), data=data,
        trace_id=fields.get("trace_id") or None,
    )


class EventCursor:
    """Reads a queue's events batch after batch from a saved position, as sans-IO operations
    (run `next_op` with `Registry.run` or `AsyncRegistry.run`); shared by `iter_events` and the
    async client's ``events()``.

    ``since``: None reads from the oldest kept, ``"$"`` only new ones. Without ``follow`` the
    cursor is `done` once it has caught up; with it, it waits for new events (done after
    ``idle_timeout_s`` without one, if given). A lost connection is retried for up to
    ``reconnect_s`` from the last id read, so no event is skipped.
    """

    def __init__(self, ops: RegistryOps, queue: str, since: str | None = None, *, follow: bool = False,
                 idle_timeout_s: float | None = None, reconnect_s: float = 30.0) -> None:
        self.ops = ops
        self.queue = queue
        self.last_id = since or "0-0"
        self.follow = follow
        self.idle_timeout_s = idle_timeout_s
        self.reconnect_s = reconnect_s
        self.done = False
        self._idle_since = time.monotonic()

    def next_op(self) -> Op[list[Event]]:
        """The next batch of events (empty while none came within one block)."""
        if self.last_id == "$":
            self.last_id = yield from self.ops.last_event_id(self.queue)
        failing_since: float | None = None
        while True:
            try:
                entries = yield from self.ops.read_events(self.queue, self.last_id,
                                                          block_ms=BLOCK_MS if self.follow else None)
                break
            except RedisUnavailableError:
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since > self.reconnect_s:
                    raise
                yield Sleep(min(RETRY_MAX_S, RETRY_MIN_S * 2 ** min(10, int(now - failing_since))))
        if entries:
            self.last_id = entries[-1][0]
            self._idle_since = time.monotonic()
        else:
            idle_s = time.monotonic() - self._idle_since
            self.done = not self.follow or (self.idle_timeout_s is not None and idle_s > self.idle_timeout_s)
        return [parse_event(self.queue, entry_id, fields) for entry_id, fields in entries]


def iter_events(registry: Registry, queue: str, since: str | None = None, *, follow: bool = False,
                idle_timeout_s: float | None = None, reconnect_s: float = 30.0) -> Iterator[Event]:
    """Events of ``queue`` after id ``since``; see `EventCursor`."""
    registry.queue_meta(queue)  # QueueNotFoundError for a queue never created
    cursor = EventCursor(registry.ops, queue, since, follow=follow, idle_timeout_s=idle_timeout_s,
                         reconnect_s=reconnect_s)
    while not cursor.done:
        yield from registry.run(cursor.next_op())


@dataclass(frozen=True)
class _Subscription:
    event: str
    handler: EventHandler
    queue: str | None


class EventListener:
    """Runs the handlers given to `on()` on one thread, reading every subscribed queue's stream.

    One blocking XREAD covers all the streams; the last id read of each is kept, so after a
    dropped connection the next read starts where the last one ended. A handler registered with
    ``queue=None`` receives the events of every queue, including queues created later.
    A handler that raises is logged and the others still run.
    """

    def __init__(self, registry: Registry, settings: Settings) -> None:
        self.registry = registry
        self.settings = settings
        self._subs: list[_Subscription] = []
        self._positions: dict[str, str] = {}
        self._all_queues = False
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: redis.Redis | None = None
        self._next_refresh = 0.0

    @property
    def client_name(self) -> str:
        """The name of the listener's Redis connection (`CLIENT LIST` shows it)."""
        return f"{self.settings.prefix}-events"

    def on(self, event: EventName | str, handler: EventHandler, queue: str | None = None) -> None:
        """Call ``handler(Event)`` for each ``event`` (or ``"*"``) of ``queue`` (None: all queues)
        that happens from now on."""
        event = event_name(event)
        if queue is not None:
            self.registry.queue_meta(queue)  # QueueNotFoundError for a queue never created
        with self._mutex:
            if queue is None:
                self._all_queues = True
                for name in self.registry.queue_names():
                    self._watch(name)
            else:
                self._watch(queue)
            self._subs.append(_Subscription(event, handler, queue))
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="jqc-events", daemon=True)
                self._thread.start()

    def off(self, event: str, handler: EventHandler) -> None:
        """Stop calling ``handler`` for ``event``; with no handler left, the thread idles."""
        with self._mutex:
            self._subs = [s for s in self._subs if not (s.event == event and s.handler == handler)]
            if not self._subs:
                self._positions.clear()
                self._all_queues = False

    def close(self, timeout: float = 5) -> None:
        """Stop the thread and close its connection."""
        with self._mutex:
            self._subs.clear()
            self._positions.clear()
            self._stop.set()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        if self._client is not None:
            self._client.close()

    def _watch(self, queue: str) -> None:
        if queue not in self._positions:
            self._positions[queue] = self.registry.last_event_id(queue)

    def _redis(self) -> redis.Redis:
        if self._client is None:
            self._client = connect(self.settings, client_name=self.client_name, extra_read_s=BLOCK_MS / 1000)
        return self._client

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._refresh_queues()
                self._read_once()
                failures = 0
            except RedisUnavailableError as exc:
                failures += 1
                if failures == 1:
                    log.warning("event listener lost Redis (%s); resuming from the last event read", exc)
                self._stop.wait(min(RETRY_MAX_S, RETRY_MIN_S * 2 ** min(failures, 10)))
            except Exception:
                log.exception("event listener failed; retrying")
                self._stop.wait(RETRY_MAX_S)

    def _refresh_queues(self) -> None:
        """Queue-less handlers: start reading the streams of queues created since (from their start)."""
        if not self._all_queues or time.monotonic() < self._next_refresh:
            return
        self._next_refresh = time.monotonic() + QUEUE_REFRESH_S
        names = self.registry.queue_names()
        with self._mutex:
            for name in names:
                self._positions.setdefault(name, "0-0")

    def _read_once(self) -> None:
        with self._mutex:
            positions = dict(self._positions)
        if not positions:
            self._stop.wait(BLOCK_MS / 1000)
            return
        entries = run_sync(lambda call: execute_sync(self._redis(), None, call),
                           self.registry.ops.read_queues_events(positions, BLOCK_MS))
        for queue, entry_id, fields in entries:
            with self._mutex:
                if queue not in self._positions:
                    continue  # unsubscribed meanwhile
                self._positions[queue] = entry_id
                subs = list(self._subs)
            for sub in matching(subs, event := parse_event(queue, entry_id, fields)):
                try:
                    sub.handler(event)
                except Exception:
                    log.exception("event handler %r failed on %s %s", sub.handler, event.event, event.id)


def matching(subs: list[_Subscription], event: Event) -> list[_Subscription]:
    """The subscriptions that receive ``event``."""
    return [sub for sub in subs if sub.event in (ALL_EVENTS, event.event) and sub.queue in (None, event.queue)]


def event_name(event: EventName | str) -> str:
    """The name `on()` takes; `InvalidArgumentError` for an unknown one."""
    name = event.value if isinstance(event, EventName) else event
    if name != ALL_EVENTS and name not in EVENT_NAMES:
        raise InvalidArgumentError(f"event {name!r}: use one of {', '.join(EVENT_NAMES)} or '*'")
    return name


class AsyncEventListener:
    """`EventListener` for asyncio: one task of the loop reads every subscribed queue's stream
    (one blocking XREAD over redis.asyncio) and calls the handlers there; a coroutine handler
    is awaited. The same subscriptions, positions and queue refresh as the thread's."""

    def __init__(self, registry: AsyncRegistry) -> None:
        self.registry = registry
        self._subs: list[_Subscription] = []
        self._positions: dict[str, str] = {}
        self._all_queues = False
        self._next_refresh = 0.0
        self._task: asyncio.Task[None] | None = None

    async def on(self, event: EventName | str, handler: Callable[[Event], Any], queue: str | None = None) -> None:
        """Call ``handler(Event)`` (awaited if it returns an awaitable) for each ``event`` (or
        ``"*"``) of ``queue`` (None: all queues) that happens from now on."""
        name = event_name(event)
        ops = self.registry.ops
        if queue is not None:
            await self.registry.run(ops.queue_meta(queue))  # QueueNotFoundError for a queue never created
        queues = [queue] if queue is not None else await self.registry.run(ops.queue_names())
        for watched in queues:
            if watched not in self._positions:
                self._positions[watched] = await self.registry.run(ops.last_event_id(watched))
        self._all_queues = self._all_queues or queue is None
        self._subs.append(_Subscription(name, handler, queue))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def off(self, event: EventName | str, handler: Callable[[Event], Any]) -> None:
        """Stop calling ``handler`` for ``event``; with no handler left, the reading task ends."""
        name = event.value if isinstance(event, EventName) else event
        self._subs = [s for s in self._subs if not (s.event == name and s.handler == handler)]
        if not self._subs:
            self._positions.clear()
            self._all_queues = False

    async def close(self) -> None:
        """Stop the reading task."""
        self._subs.clear()
        self._positions.clear()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        failures = 0
        while self._subs:
            try:
                await self._refresh_queues()
                await self._read_once()
                failures = 0
            except RedisUnavailableError as exc:
                failures += 1
                if failures == 1:
                    log.warning("event listener lost Redis (%s); resuming from the last event read", exc)
                await asyncio.sleep(min(RETRY_MAX_S, RETRY_MIN_S * 2 ** min(failures, 10)))
            except Exception:
                log.exception("event listener failed; retrying")
                await asyncio.sleep(RETRY_MAX_S)

    async def _refresh_queues(self) -> None:
        if not self._all_queues or time.monotonic() < self._next_refresh:
            return
        self._next_refresh = time.monotonic() + QUEUE_REFRESH_S
        for name in await self.registry.run(self.registry.ops.queue_names()):
            self._positions.setdefault(name, "0-0")

    async def _read_once(self) -> None:
        entries = await self.registry.run(self.registry.ops.read_queues_events(dict(self._positions), BLOCK_MS))
        for queue, entry_id, fields in entries:
            if queue not in self._positions:
                continue  # unsubscribed meanwhile
            self._positions[queue] = entry_id
            event = parse_event(queue, entry_id, fields)
            for sub in matching(list(self._subs), event):
                try:
                    returned = sub.handler(event)
                    if inspect.isawaitable(returned):
                        await returned
                except Exception:
                    log.exception("event handler %r failed on %s %s", sub.handler, event.event, event.id)
