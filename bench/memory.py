"""Where the memory of a waiting job goes: each Redis structure's share, with Redis's default
encoding limits and with ``hash-max-listpack-value`` raised so the job hash stays a listpack."""

from __future__ import annotations

from typing import Any

from bench.server import DedicatedRedis
from bench.subjects import CoordinatorSubject

JOBS = 2000


def _breakdown(subject: CoordinatorSubject, server: DedicatedRedis, queue: str, payload: str) -> dict[str, Any]:
    coord = subject.coord
    client = server.client()
    coord.create_queue(queue)
    before = client.info("memory")["used_memory"]
    jobs = coord.enqueue_bulk(queue, [{"data": payload}] * JOBS)
    after = client.info("memory")["used_memory"]
    qk = coord._registry.queue_keys(queue)
    level = jobs[0].options.priority - 1
    job_key = qk.job(jobs[0].id)
    parts = {
        "job_hash": client.memory_usage(job_key, samples=0),
        "job_hash_encoding": client.object("encoding", job_key),
        "broker_message": client.memory_usage(qk.broker_list(level), samples=0) / JOBS,
        "message_bytes": len(client.lindex(qk.broker_list(level), 0) or ""),
        "waiting_index": client.memory_usage(qk.index("waiting"), samples=0) / JOBS,
        "event": client.memory_usage(qk.events, samples=0) / client.xlen(qk.events),
        "total_per_job": (after - before) / JOBS,
    }
    coord.delete_queue(queue)
    return parts


def measure_memory(subject: CoordinatorSubject, server: DedicatedRedis, payload: str) -> dict[str, Any]:
    """The breakdown at Redis's defaults, then with hash-max-listpack-value 256 (a server setting)."""
    client = server.client()
    default_limit = client.config_get("hash-max-listpack-value")["hash-max-listpack-value"]
    result = {"redis_defaults": _breakdown(subject, server, "mem-default", payload)}
    client.config_set("hash-max-listpack-value", 256)
    try:
        result["hash_max_listpack_value_256"] = _breakdown(subject, server, "mem-listpack", payload)
    finally:
        client.config_set("hash-max-listpack-value", default_limit)
    return result
