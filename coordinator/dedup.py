"""Deduplication keys: the owner of the dedup records (`QueueKeys.dedup`) and of how a key is named.

A dedup record is a Redis string per queue and key, holding the id of the job that stands for
the key. The scope of a key is its queue: the same key in two queues names two records.
Written and read only by the registry's Lua scripts (``dedup*`` in ``registry/lua/_lib.lua``):

- ``enqueue.lua`` checks the record and writes the job in the same script: a held key adds no job
  and the call gets the standing job's id (``deduplicated`` event, ``all:d`` in the metrics);
  a free key is taken by the new job. Two jobs with one key in one `enqueue_bulk` are one check
  after the other, so the second returns the first.
- Modes: ``until_finished`` and ``debounce`` records stand until the job ends (completed, failed
  for good, cancelled, expired); the job keeps the record's name in its ``dedup`` field and the
  scripts that end it (``finish``, ``cancel``, ``recover_stalled``, ``expire``) delete the record
  only while it still names that job. A retry keeps the key; `retry_job` of a job that ended does
  not take it again. ``until_finished`` with ``ttl_ms`` also lapses after ttl_ms; ``ttl``
  (throttle) records just expire ttl_ms after the enqueue that wrote them.
- A record whose job is gone or final (``until_finished``, ``debounce``) or has started
  (``debounce``) is taken over by the next enqueue.

The key: `Dedup.key` as given, or `derived_key` of `Dedup.fields`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from coordinator.errors import InvalidArgumentError
from coordinator.models import Dedup, JobOptions


@dataclass(frozen=True, slots=True)
class DedupEntry:
    """The dedup key of one job being enqueued, resolved: what ``enqueue.lua`` receives."""

    key: str
    mode: str
    ttl_ms: int
    keep: str

    def args(self, position: int) -> list[Any]:
        """Its ARGV entry in ``enqueue.lua`` (``DEDUP_PER`` values) for the job at ``position``."""
        return [position, self.key, self.mode, self.ttl_ms, self.keep]


def derived_key(fields: list[str], data: Any) -> str:
    """The key derived from fields of the data: the SHA-256 (hex) of the compact JSON object of
    those fields and their values, keys sorted, so field order and the rest of the data do not
    matter. InvalidArgumentError (naming the field) if the data is not an object or lacks one."""
    if not isinstance(data, Mapping):
        raise InvalidArgumentError(f"dedup.fields: the job's data must be an object to take fields from, "
                                   f"not {type(data).__name__}")
    missing = [name for name in fields if name not in data]
    if missing:
        raise InvalidArgumentError(f"dedup.fields: {missing[0]!r} is not in the job's data")
    picked = {name: data[name] for name in fields}
    text = json.dumps(picked, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def dedup_entry(dedup: Dedup, data: Any) -> DedupEntry:
    """The resolved key and mode of a job's `Dedup` option (errors before anything is written)."""
    key = dedup.key if dedup.key is not None else derived_key(dedup.fields or [], data)
    return DedupEntry(key, dedup.mode, dedup.ttl_ms or 0, dedup.keep)


def refuse_in_flow(options: JobOptions, where: str) -> None:
    """InvalidArgumentError for a `dedup` option on a job of a flow, a DAG or a batch: such a job
    is waited for by others, so it must be written, never replaced by a job that stands."""
    if options.dedup is not None:
        raise InvalidArgumentError(f"dedup: not supported on {where} jobs (others wait for the job itself)")
