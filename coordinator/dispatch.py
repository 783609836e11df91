"""Names of one dispatch of a job, shared by the Lua scripts and Python.

Each time a job becomes waiting it gets a new dispatch token (``HINCRBY token`` in ``makeWaiting``,
``registry/lua/_lib.lua``). Its Celery message carries:

    task id        ``<job id>.<token>``            (Celery's task id: results, revoke, Flower)
    delivery tag   ``<celery queue>/<task id>``     (kombu's key in the unacked hash)

Lua builds both with ``taskId`` / ``deliveryTag`` in ``_lib.lua``; Python builds and parses them
only here. A job id may itself contain dots, so parsing splits at the last one.
"""

from __future__ import annotations

from typing import NamedTuple

TOKEN_SEP = "."
TAG_SEP = "/"


class Dispatch(NamedTuple):
    """One dispatch of a job: its id and token."""

    job_id: str
    token: int


def task_id(job_id: str, token: int) -> str:
    """The Celery task id of one dispatch of a job."""
    return f"{job_id}{TOKEN_SEP}{token}"


def parse_task_id(value: str) -> Dispatch | None:
    """The job id and token of a task id built by `task_id`, or None if it is not one."""
    job_id, _, token = value.rpartition(TOKEN_SEP)
    if not job_id or not token.isdigit():
        return None
    return Dispatch(job_id, int(token))


def delivery_tag(celery_queue: str, job_id: str, token: int) -> str:
    """kombu's delivery tag of one dispatch's message (its key in the unacked hash)."""
    return f"{celery_queue}{TAG_SEP}{task_id(job_id, token)}"


def parse_delivery_tag(tag: str, celery_queue: str) -> Dispatch | None:
    """The dispatch of a delivery tag of ``celery_queue``, or None if the tag is not one of its."""
    head = f"{celery_queue}{TAG_SEP}"
    if not tag.startswith(head):
        return None
    return parse_task_id(tag[len(head):])
