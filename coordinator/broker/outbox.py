"""The relay from a queue's outbox in Redis to a broker such as RabbitMQ (see `coordinator.broker`)."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

from celery import Celery

from coordinator.registry import Registry

log = logging.getLogger(__name__)

#: Messages claimed per round trip.
RELAY_BATCH = 200
#: A claimed message not confirmed after this long is published again (its relay died).
RELAY_STALE_MS = 30_000
#: RabbitMQ reads higher numbers first; `x-max-priority` of every coordinator queue.
AMQP_MAX_PRIORITY = 10


def amqp_priority(kombu_redis_level: int) -> int:
    """kombu's Redis level (0 highest .. 9) as an AMQP priority (10 highest .. 1)."""
    return AMQP_MAX_PRIORITY - int(kombu_redis_level)


class OutboxRelay:
    """Publishes the messages the registry's scripts left in a queue's outbox."""

    def __init__(self, app: Celery, registry: Registry) -> None:
        self.app = app
        self.registry = registry

    def flush(self, queue: str) -> int:
        """Publish everything in the queue's outbox now; returns how many were published."""
        published = 0
        while True:
            messages = self.registry.claim_outbox(queue, RELAY_BATCH, RELAY_STALE_MS)
            if not messages:
                return published
            self._publish(queue, messages)
            self.registry.release_outbox(queue, messages)
            published += len(messages)

    def _publish(self, queue: str, messages: list[str]) -> None:
        declared = self.app.amqp.queues[self.registry.queue_keys(queue).celery_queue]
        with self.app.producer_or_acquire() as producer:
            for raw in messages:
                message = json.loads(raw)
                producer.publish(
                    _body(message), exchange=declared.exchange, routing_key=declared.routing_key,
                    declare=[declared], retry=True, **_publish_options(message),
                )


def _body(message: dict[str, Any]) -> bytes:
    body = message["body"]
    if message["properties"].get("body_encoding") == "base64":
        return base64.b64decode(body)
    return body.encode("utf-8")


def _publish_options(message: dict[str, Any]) -> dict[str, Any]:
    props = message["properties"]
    return {
        "headers": message["headers"], "content_type": message["content-type"],
        "content_encoding": message["content-encoding"], "priority": amqp_priority(props["priority"]),
        "correlation_id": props.get("correlation_id") or message["headers"]["id"],
        "delivery_mode": 2,
    }
