"""Tracks tasks of an adopted Celery app that are sent to a coordinator queue with plain
`apply_async`: they get a registry record (waiting, active, completed, failed, delayed on a
Celery retry) so they show in the coordinator's counts and job lists.

Only tracking: such a task is published and retried by Celery itself, so pause, cancel and
priority changes of the coordinator do not apply to it.
"""

from __future__ import annotations

import json
import traceback
from typing import Any

from celery import Celery, Task, signals

from coordinator.errors import InvalidJobDataError
from coordinator.registry import Registry
from coordinator.validation import MAX_RESULT_SIZE, encode_json


class ForeignTaskTracker:
    """Celery signal receivers that record an adopted app's own tasks in the registry."""

    def __init__(self, app: Celery, registry: Registry) -> None:
        self.app = app
        self.registry = registry
        self.keys = registry.keys
        self._receivers = (
            (signals.before_task_publish, self._published),
            (signals.task_prerun, self._started),
            (signals.task_success, self._succeeded),
            (signals.task_failure, self._failed),
            (signals.task_retry, self._retried),
        )

    def connect(self) -> None:
        for signal, receiver in self._receivers:
            signal.connect(receiver, weak=False)

    def disconnect(self) -> None:
        for signal, receiver in self._receivers:
            signal.disconnect(receiver)

    def _queue_of(self, routing_key: str | None, task_name: str | None) -> str | None:
        queue = self.keys.queue_of(routing_key or "")
        if queue is None or task_name == self.keys.task_name(queue):
            return None  # not a coordinator queue, or one of our own processor tasks
        return queue

    def _task_queue(self, task: Task) -> str | None:
        if task.app is not self.app:
            return None
        delivery = getattr(task.request, "delivery_info", None) or {}
        return self._queue_of(delivery.get("routing_key"), task.name)

    def _published(self, sender: str | None = None, body: Any = None, headers: dict[str, Any] | None = None,
                   routing_key: str | None = None, **_: Any) -> None:
        queue = self._queue_of(routing_key, sender)
        if queue is None or not headers:
            return
        args, kwargs = (body[0], body[1]) if isinstance(body, (list, tuple)) and len(body) >= 2 else ([], {})
        data = _plain({"args": args, "kwargs": kwargs})
        self.registry.track_foreign(queue, headers["id"], "waiting", name=sender or "", data=data)

    def _started(self, task_id: str, task: Task, **_: Any) -> None:
        queue = self._task_queue(task)
        if queue is not None:
            self.registry.track_foreign(queue, task_id, "active", name=task.name,
                                              worker=task.request.hostname or "")

    def _succeeded(self, sender: Task, result: Any = None, **_: Any) -> None:
        queue = self._task_queue(sender)
        if queue is not None:
            self.registry.track_foreign(queue, sender.request.id, "completed", name=sender.name,
                                              result=_plain(result))

    def _failed(self, sender: Task, task_id: str, exception: BaseException, **_: Any) -> None:
        queue = self._task_queue(sender)
        if queue is not None:
            stack = "".join(traceback.format_exception(exception))
            self.registry.track_foreign(queue, task_id, "failed", name=sender.name,
                                              reason=f"{type(exception).__name__}: {exception}", stack=stack)

    def _retried(self, sender: Task, request: Any = None, reason: Any = None, **_: Any) -> None:
        queue = self._task_queue(sender)
        if queue is not None and request is not None:
            self.registry.track_foreign(queue, request.id, "delayed", name=sender.name, reason=str(reason))


def _plain(value: Any) -> str:
    """JSON of a foreign task's arguments or result; its repr when that is not plain JSON."""
    try:
        return encode_json(value, "result", MAX_RESULT_SIZE)
    except InvalidJobDataError:
        return json.dumps(repr(value)[:1000])
