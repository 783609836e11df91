"""kombu's Redis transport, made to survive poison messages.

kombu's `_brpop_read` decodes the popped item without error handling, so one non-JSON item
in a queue list kills the worker ("Unrecoverable error: JSONDecodeError"), and an item without
a ``delivery_tag`` is handled as a lost connection. This channel decodes and checks the item
first; a bad one is recorded as a failed job of its queue and never delivered.
"""

from __future__ import annotations

import json
import logging
from queue import Empty
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str

from coordinator.keys import CoordinatorKeys

log = logging.getLogger(__name__)

#: The broker transport option that names the coordinator prefix.
PREFIX_OPTION = "coordinator_prefix"


class PoisonGuard:
    """The checked `_brpop_read` shared by the plain and the Sentinel channel."""

    coordinator_prefix: str | None = None
    # provided by the kombu Redis channel this class is mixed into
    client: Any
    connection: Any
    connection_errors: tuple[type[BaseException], ...]
    sep: str
    _queue_cycle: Any
    _in_poll: Any

    def _brpop_read(self, **options: Any) -> bool:
        # kombu 5.7's _brpop_read, with the decoding step checked (see the module docstring).
        try:
            try:
                dest_item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            if not dest_item:
                raise Empty()
            dest, item = dest_item
            dest = bytes_to_str(dest).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            payload = self._checked_payload(dest, item)
            if payload is not None:
                self.connection._deliver(payload, dest)
            return True
        finally:
            self._in_poll = None
            flush = getattr(self, "_flush_brpop_reauth", None)
            if flush is not None:
                flush()

    def _checked_payload(self, celery_queue: str, item: bytes) -> dict[str, Any] | None:
        try:
            payload = json.loads(bytes_to_str(item))
            if not isinstance(payload, dict) or not isinstance(payload.get("properties"), dict):
                raise ValueError("not a kombu message (no properties)")
            if "delivery_tag" not in payload["properties"]:
                raise ValueError("not a kombu message (no delivery_tag)")
        except (ValueError, UnicodeDecodeError) as exc:
            self._quarantine(celery_queue, item, f"undecodable message: {exc}")
            return None
        return payload

    def _quarantine(self, celery_queue: str, item: bytes, reason: str) -> None:
        from coordinator.registry import Registry

        prefix = self.coordinator_prefix
        queue = CoordinatorKeys(prefix).queue_of(celery_queue) if prefix else None
        log.error("poison message dropped from %s: %s", celery_queue, reason)
        if prefix and queue is not None:
            Registry(self.client, prefix).record_poison(queue, item, reason)


class Channel(PoisonGuard, kombu_redis.Channel):
    # kombu types the tuple by its length
    from_transport_options = kombu_redis.Channel.from_transport_options + (PREFIX_OPTION,)  # type: ignore[assignment]


class SentinelChannel(PoisonGuard, kombu_redis.SentinelChannel):
    """The same checks over a master found through Redis Sentinel (reconnects after a failover)."""

    from_transport_options = kombu_redis.SentinelChannel.from_transport_options + (PREFIX_OPTION,)  # type: ignore[assignment]


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel
