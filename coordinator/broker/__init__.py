"""How a waiting job's Celery message reaches the broker: the seam between registry and broker.

- Redis as the broker (the fast path): the registry's scripts push the kombu message straight
  onto kombu's priority lists, in the same atomic step as the state move.
- Any other broker (RabbitMQ): the scripts push the same message into the queue's outbox list,
  in the same step; `OutboxRelay` publishes it with kombu (publisher confirms) and only then
  forgets it. A relay that dies between the two leaves the message claimed; it is put back and
  published again, and the worker's token check drops the duplicate. An outbox rather than
  publish-then-write, because the registry write and the publish cannot share a transaction:
  this way a job is never waiting in the registry without a message on its way, nor published
  without a record.
"""

from coordinator.broker.outbox import OutboxRelay

__all__ = ["OutboxRelay"]
