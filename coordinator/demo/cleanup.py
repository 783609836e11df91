"""Leaving nothing behind: the demo's Redis keys (its own prefix), processes and files, also on Ctrl-C."""

from __future__ import annotations

import contextlib
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import redis

from coordinator import CoordinatorError, JobQueueCoordinator


def delete_prefix_keys(client: redis.Redis, prefix: str) -> int:
    """Delete every key the coordinator and Celery wrote under ``prefix`` (SCAN + UNLINK, never FLUSH)."""
    deleted = 0
    for pattern in (f"{prefix}:*", f"{prefix}.*", f"_kombu.binding*.{prefix}[:.]*"):
        batch: list[str] = []
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += client.unlink(*batch)
                batch.clear()
        if batch:
            deleted += client.unlink(*batch)
    return deleted


def remove_demo_data(coord: JobQueueCoordinator, queues: list[str], schedule_keys: list[tuple[str, str]]) -> int:
    """Remove the demo's schedules and queues through the API, then any key left under its prefix."""
    for queue, key in schedule_keys:
        with contextlib.suppress(CoordinatorError):
            coord.remove_recurring_job(queue, key)
    for queue in queues:
        with contextlib.suppress(CoordinatorError):
            coord.delete_queue(queue)
    client = redis.Redis.from_url(coord.settings.url, decode_responses=True)
    try:
        return delete_prefix_keys(client, coord.settings.prefix)
    finally:
        client.close()


def remove_tree(path: Path | None) -> None:
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _signals_handled_by(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """Inside the block ``handler`` takes SIGINT and SIGTERM (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def signals_as_interrupt() -> contextlib.AbstractContextManager[None]:
    """Inside the block SIGINT and SIGTERM raise KeyboardInterrupt, so Ctrl-C and `kill` both end in
    the demo's own clean-up (an explicit handler also keeps the worker manager's default one away)."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    return _signals_handled_by(interrupt)


def interrupts_deferred(on_interrupt: str = "") -> contextlib.AbstractContextManager[None]:
    """Inside the block Ctrl-C and SIGTERM do not stop the clean-up; they only print ``on_interrupt``."""

    def note(signum: int, frame: FrameType | None) -> None:
        if on_interrupt:
            print(on_interrupt, flush=True)

    return _signals_handled_by(note)
