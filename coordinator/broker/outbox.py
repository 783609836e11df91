"""The relay from a queue's outbox in Redis to a broker such as RabbitMQ (see `coordinator.broker`)."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

from celery import Celery
from kombu.exceptions import OperationalError

from coordinator.registry import Registry
from coordinator.settings import redact_url

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
        """Publish everything in the queue's outbox now; returns how many were published.

        A broker that cannot be reached does not fail the write that dispatched: the job is in the
        registry and its message stays claimed, published again after ``RELAY_STALE_MS``."""
        published = 0
        while True:
            messages = self.registry.claim_outbox(queue, RELAY_BATCH, RELAY_STALE_MS)
            if not messages:
                return published
            try:
                self._publish(queue, messages)
            except (OperationalError, OSError) as exc:
                log.warning("broker %s unreachable (%s): %d message(s) of queue %s stay in the outbox, "
                            "published again within %d s", redact_url(self.app.conf.broker_url), exc,
                            len(messages), queue, RELAY_STALE_MS // 1000)
                return published
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
