"""Celery's worker consumer, recording messages it cannot run as failed jobs of their queue.

Celery acks and drops a message it cannot decode (a disallowed content type such as pickle, a
corrupt body) and rejects one naming an unknown task, leaving a line in the log only. Here each
also lands in the queue's failed list with its reason; the worker goes on.
"""

from __future__ import annotations

from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer

from coordinator.keys import CoordinatorKeys
from coordinator.runtime.transport import PREFIX_OPTION


class Consumer(CeleryConsumer):
    def on_decode_error(self, message: Any, exc: Exception) -> None:
        self._record(message, f"undecodable message ({message.content_type}): {exc}")
        super().on_decode_error(message, exc)

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        self._record(message, f"unknown task: {exc}")
        super().on_unknown_task(body, message, exc)

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        self._record(message, f"invalid task message: {exc}")
        super().on_invalid_task(body, message, exc)

    def _record(self, message: Any, reason: str) -> None:
        from coordinator.registry import Registry

        prefix = (self.app.conf.broker_transport_options or {}).get(PREFIX_OPTION)
        routing_key = (message.delivery_info or {}).get("routing_key") or ""
        queue = CoordinatorKeys(prefix).queue_of(routing_key) if prefix else None
        if not prefix or queue is None:
            return
        with self.app.pool.acquire(block=True) as conn:
            client = conn.default_channel.client
            Registry(client, prefix).record_poison(queue, message.body, reason)
