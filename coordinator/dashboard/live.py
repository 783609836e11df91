"""Live updates: the coordinator's events stream, fanned out to browsers as server-sent events.

One `coord.on("*")` subscription (the coordinator's listener thread, reading every queue's
stream) serves every open page. Each page gets ``changed`` events naming the queues that
changed (a job's page: only when that job changed), at most one every `COALESCE_S`, and its htmx
fragments re-read what they show.
The subscription is dropped when the last page closes.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from coordinator.models import Event

if TYPE_CHECKING:
    from coordinator.facade import JobQueueCoordinator

#: Changes within this window go out as one message.
COALESCE_S = 0.4
#: A comment line this often keeps proxies from closing an idle stream.
KEEPALIVE_S = 15.0


class _Subscriber:
    def __init__(self, loop: asyncio.AbstractEventLoop, queue: str | None, job_id: str | None) -> None:
        self.loop = loop
        self.queue = queue
        self.job_id = job_id
        self.changed: set[str] = set()
        self.wake = asyncio.Event()

    def notify(self, queue: str) -> None:
        """Called on the loop's thread."""
        self.changed.add(queue)
        self.wake.set()


class LiveHub:
    """Fans the coordinator's events out to the open pages."""

    def __init__(self, coord: JobQueueCoordinator) -> None:
        self.coord = coord
        self._subs: set[_Subscriber] = set()
        self._mutex = threading.Lock()
        self._subscribed = False

    def _on_event(self, event: Event) -> None:
        with self._mutex:
            subs = list(self._subs)
        for sub in subs:
            if sub.queue in (None, event.queue) and sub.job_id in (None, event.job_id):
                try:
                    sub.loop.call_soon_threadsafe(sub.notify, event.queue)
                except RuntimeError:  # its loop closed; the page's stream is going away
                    continue

    def _add(self, sub: _Subscriber) -> None:
        with self._mutex:
            self._subs.add(sub)
            subscribe = not self._subscribed
            self._subscribed = True
        if subscribe:
            self.coord.on("*", self._on_event)

    def _remove(self, sub: _Subscriber) -> None:
        with self._mutex:
            self._subs.discard(sub)
            unsubscribe = self._subscribed and not self._subs
            if unsubscribe:
                self._subscribed = False
        if unsubscribe:
            self.coord.off("*", self._on_event)

    async def stream(self, queue: str | None, job_id: str | None = None) -> AsyncIterator[str]:
        """SSE text: a ``changed`` event (data: JSON list of queue names) after each burst of
        events of ``queue`` (None: every queue), or only of its job ``job_id``."""
        sub = _Subscriber(asyncio.get_running_loop(), queue, job_id)
        await asyncio.to_thread(self._add, sub)
        try:
            yield "retry: 2000\n: connected\n\n"
            while True:
                try:
                    await asyncio.wait_for(sub.wake.wait(), KEEPALIVE_S)
                except asyncio.TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                await asyncio.sleep(COALESCE_S)
                changed, sub.changed = sorted(sub.changed), set()
                sub.wake.clear()
                yield f"event: changed\ndata: {json.dumps(changed)}\n\n"
        finally:
            self._remove(sub)  # no await: the generator may be closing on a cancelled task
