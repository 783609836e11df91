"""The owner of the worker heartbeat records: each worker's status hash (`CoordinatorKeys.worker`),
the index of workers by last beat (`CoordinatorKeys.workers`) and a worker's pause flag.

A worker's maintenance thread writes its hash every few seconds (`HeartbeatStore.beat`); the
worker counts its finished attempts in the same hash where the job ran (`count_outcome`, batched
by `runtime.locks.LockKeeper`); the
managing process, the health check, the CLI and the exporter read it. Fields:

    node, pid, host     the Celery node name, main process id, hostname
    queues              the coordinator queues it consumes, comma-separated
    heartbeat, started  last beat and first beat of this process (ms)
    state               ``running`` or ``paused`` (as applied by its consumer)
    active              requests it is running
    held                messages it holds, prefetched or running
    concurrency         pool size; with --autoscale also autoscale_max, autoscale_min
    rss                 resident memory of its process tree (bytes)
    processed, failed   finished attempts and failed ones since this process started

The hash expires `HEARTBEAT_TTL_MS` after the last write, so a dead worker's record goes away
by itself; a worker is *live* while its last beat is newer than `WORKER_LIVE_MS`.
"""

from __future__ import annotations

from functools import partial
from typing import Any, TypeVar

import redis

from coordinator.clock import now_ms
from coordinator.keys import CoordinatorKeys
from coordinator.registry.calls import Batch, Op, cmd, execute_sync, run_sync

T = TypeVar("T")

#: How often a worker beats.
HEARTBEAT_INTERVAL_S = 2.0
#: The heartbeat hash expires this long after the last write.
HEARTBEAT_TTL_MS = int(HEARTBEAT_INTERVAL_S * 5000)
#: A worker whose last beat is older than this is not counted as live.
WORKER_LIVE_MS = 10_000
RUNNING = "running"
PAUSED = "paused"


class HeartbeatOps:
    """The heartbeat reads and writes that async code runs too, as sans-IO operations
    (`registry.calls`): run them with `Registry.run` / `AsyncRegistry.run` or `HeartbeatStore`."""

    def __init__(self, keys: CoordinatorKeys) -> None:
        self.keys = keys

    def count_outcome(self, node: str, processed: int, failed: int) -> Op[None]:
        """Add finished attempts (and the failures among them) to the worker's counts."""
        key = self.keys.worker(node)
        yield Batch([
            cmd("hincrby", key, "processed", processed),
            *([cmd("hincrby", key, "failed", failed)] if failed else []),
            cmd("pexpire", key, HEARTBEAT_TTL_MS),
        ], transaction=True)

    def live_by_queue(self, nodes: list[str] | None = None) -> Op[dict[str, int]]:
        """How many live workers consume each queue (``nodes``: the live nodes, if already read)."""
        if nodes is None:
            nodes = yield cmd("zrangebyscore", self.keys.workers, now_ms() - WORKER_LIVE_MS, "+inf")
        if not nodes:
            return {}
        replies = yield Batch([cmd("hget", self.keys.worker(node), "queues") for node in nodes])
        live: dict[str, int] = {}
        for queues in replies:
            for queue in queue_list(queues):
                live[queue] = live.get(queue, 0) + 1
        return live


class HeartbeatStore:
    """Reads and writes of the worker heartbeat records of one prefix."""

    def __init__(self, client: redis.Redis, keys: CoordinatorKeys) -> None:
        self.client = client
        self.keys = keys
        self.ops = HeartbeatOps(keys)

    # ----------------------------------------------------------------------------- worker side

    def beat(self, node: str, record: dict[str, Any], first: bool = False) -> None:
        """Write a worker's status; the ``first`` beat of a process starts its hash afresh
        (counts at zero) and records when it started."""
        key = self.keys.worker(node)
        now = now_ms()
        pipe = self.client.pipeline(transaction=True)
        if first:
            pipe.delete(key)
            pipe.hset(key, mapping={"processed": 0, "failed": 0})
        pipe.hset(key, mapping={**record, "node": node, "heartbeat": now})
        pipe.hsetnx(key, "started", now)
        pipe.pexpire(key, HEARTBEAT_TTL_MS)
        pipe.zadd(self.keys.workers, {node: now})
        pipe.execute()

    def set_state(self, node: str, paused: bool) -> None:
        """Record that the worker's consumer applied a pause (or a resume)."""
        key = self.keys.worker(node)
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(key, "state", PAUSED if paused else RUNNING)
        pipe.pexpire(key, HEARTBEAT_TTL_MS)
        pipe.execute()

    def count_outcome(self, node: str, processed: int, failed: int) -> None:
        """Add finished attempts (and the failures among them) to the worker's counts."""
        self._run(self.ops.count_outcome(node, processed, failed))

    def _run(self, op: Op[T]) -> T:
        return run_sync(partial(execute_sync, self.client, None), op)

    def remove(self, node: str) -> None:
        """Remove the worker's record (it is stopping, or it died and cannot)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(self.keys.worker(node))
        pipe.zrem(self.keys.workers, node)
        pipe.execute()

    # ----------------------------------------------------------------------------- pause flag

    def set_pause_flag(self, node: str, paused: bool) -> None:
        """Ask the worker to pause (or resume); it polls the flag, so the request outlives restarts."""
        if paused:
            self.client.set(self.keys.worker_paused(node), "1")
        else:
            self.client.delete(self.keys.worker_paused(node))

    def forget(self, node: str, remove_record: bool) -> None:
        """A managed worker was stopped: drop its pause flag and, if its process could not remove
        its own record (it was killed), the record too."""
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(self.keys.worker_paused(node))
        if remove_record:
            pipe.delete(self.keys.worker(node))
            pipe.zrem(self.keys.workers, node)
        pipe.execute()

    def pause_requested(self, node: str) -> bool:
        return bool(self.client.exists(self.keys.worker_paused(node)))

    # ----------------------------------------------------------------------------- reads

    def read(self, node: str) -> dict[str, str]:
        """The worker's hash ({} once it expired)."""
        return self.client.hgetall(self.keys.worker(node))

    def field(self, node: str, name: str) -> str | None:
        return self.client.hget(self.keys.worker(node), name)

    def last_beats(self, nodes: list[str]) -> list[int | None]:
        """Each worker's last beat (ms), None where its record is gone; one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for node in nodes:
            pipe.hget(self.keys.worker(node), "heartbeat")
        return [int(beat) if beat else None for beat in pipe.execute()]

    def queue_live_nodes(self, pipe: redis.client.Pipeline) -> None:
        """Add the read of the live workers' nodes to ``pipe`` (its reply is a list of nodes),
        for a caller that reads more in the same round trip."""
        pipe.zrangebyscore(self.keys.workers, now_ms() - WORKER_LIVE_MS, "+inf")

    def live_nodes(self) -> list[str]:
        """Workers on any host whose last beat is fresh."""
        pipe = self.client.pipeline(transaction=False)
        self.queue_live_nodes(pipe)
        nodes: list[str] = pipe.execute()[0]
        return nodes

    def live_by_queue(self, nodes: list[str] | None = None) -> dict[str, int]:
        """How many live workers consume each queue (``nodes``: the live nodes, if already read)."""
        return self._run(self.ops.live_by_queue(nodes))

    def live_records(self) -> list[dict[str, str]]:
        """The hashes of every live worker (node first), skipping ones that expired meanwhile."""
        nodes = self.live_nodes()
        pipe = self.client.pipeline(transaction=False)
        for node in nodes:
            pipe.hgetall(self.keys.worker(node))
        return [{"node": node, **record} for node, record in zip(nodes, pipe.execute()) if record]


def queue_list(queues: str | None) -> list[str]:
    """The queue names of a heartbeat's ``queues`` field."""
    return [queue for queue in (queues or "").split(",") if queue]
