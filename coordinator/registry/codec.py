"""Turns a job's Redis hash into a `Job` snapshot; times are stored as epoch ms."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, overload

from coordinator.dispatch import task_id
from coordinator.models import Job, JobOptions, JobState


@overload
def from_ms(value: int) -> datetime: ...
@overload
def from_ms(value: str | int | None) -> datetime | None: ...
def from_ms(value: str | int | None) -> datetime | None:
    """A UTC datetime from ms since the epoch; None for None or ""."""
    if value is None or value == "":
        return None
    return datetime.fromtimestamp(int(value) / 1000, tz=timezone.utc)


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _json(value: str | None, default: Any = None) -> Any:
    return default if value is None or value == "" else json.loads(value)


@lru_cache(maxsize=256)
def _options(encoded: str) -> JobOptions:
    """Options from their stored JSON; most jobs of a queue share the same few, and the model is
    frozen, so one parsed instance serves them all (a worker parses one per job otherwise)."""
    return JobOptions.model_validate_json(encoded) if encoded else JobOptions()


def _task_id(job_id: str, fields: dict[str, str]) -> str | None:
    if fields.get("foreign"):
        return job_id
    token = fields.get("token")
    return task_id(job_id, int(token)) if token else None


def job_from_hash(queue: str, job_id: str, fields: dict[str, str], logs: list[str] | None = None) -> Job:
    """Build the snapshot from the fields written by the registry's scripts."""
    options = _options(fields.get("opts") or "")
    if fields.get("priority") and int(fields["priority"]) != options.priority:
        options = options.model_copy(update={"priority": int(fields["priority"])})
    return Job(
        id=job_id,
        queue=queue,
        name=fields["name"],
        data=_json(fields.get("data")),
        options=options,
        state=JobState(fields["state"]),
        attempts_made=int(fields.get("attempts", 0)),
        stalled_count=int(fields.get("stalled", 0)),
        progress=_json(fields.get("progress"), 0),
        result=_json(fields.get("result")),
        failed_reason=fields.get("reason") or None,
        stacktrace=_json(fields.get("stack"), []),
        logs=logs or [],
        created_at=from_ms(fields["created"]),
        processed_on=from_ms(fields.get("processed")),
        finished_on=from_ms(fields.get("finished")),
        worker_id=fields.get("worker") or None,
        trace_id=fields.get("trace") or None,
        schedule_key=fields.get("schedule") or None,
        celery_task_id=_task_id(job_id, fields),
    )
