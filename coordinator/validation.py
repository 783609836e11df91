"""Checks on names and data that reach Redis keys or job records, shared by models and managers.

Names are limited to a small charset so that no input can reach another queue's or prefix's keys.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from coordinator.errors import InvalidJobDataError, InvalidNameError

_QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,199}")
_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")

#: Default cap on encoded job data (bytes).
DEFAULT_MAX_JOB_SIZE = 10 * 1024 * 1024
#: Caps on what a processor writes back: its result, a progress value, one log line.
MAX_RESULT_SIZE = 10 * 1024 * 1024
MAX_PROGRESS_SIZE = 64 * 1024
MAX_LOG_LINE = 16 * 1024
#: Log lines kept per job (the oldest are dropped).
MAX_LOG_LINES = 1000


def check_queue_name(name: str) -> str:
    """A queue name: letters, digits, ``. _ -``, 1-100 characters, starting alphanumeric."""
    if not isinstance(name, str) or not _QUEUE_NAME.fullmatch(name):
        raise InvalidNameError(
            f"queue name {name!r}: use 1-100 of A-Z a-z 0-9 . _ - and start with a letter or digit"
        )
    return name


#: Longest group or limiter name (`JobOptions.group`, `JobOptions.limits`, `set_limiter`).
MAX_GROUP_NAME = 128
#: Named limiters one job may take at most.
MAX_JOB_LIMITS = 16


def check_group_name(name: str, field: str = "group") -> str:
    """A group or limiter name: 1-128 characters, none of them a control character (the group
    keys join names with a NUL byte, and names show in logs and metrics labels)."""
    if not isinstance(name, str) or not name or len(name) > MAX_GROUP_NAME:
        raise InvalidNameError(f"{field} {name!r}: give 1-{MAX_GROUP_NAME} characters")
    if any(ord(char) < 32 or ord(char) == 127 for char in name):
        raise InvalidNameError(f"{field} {name!r}: control characters are not allowed")
    return name


def check_job_id(job_id: str | None) -> str | None:
    """A job id (or schedule key): letters, digits, ``. _ : @ -``, 1-200 characters."""
    if job_id is not None and (not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id)):
        raise InvalidNameError(
            f"job_id {job_id!r}: use 1-200 of A-Z a-z 0-9 . _ : @ - and start with a letter or digit"
        )
    return job_id


def check_trace_id(trace_id: str | None) -> str | None:
    if trace_id is not None and (not isinstance(trace_id, str) or not _JOB_ID.fullmatch(trace_id)):
        raise InvalidNameError(f"trace_id {trace_id!r}: use 1-200 of A-Z a-z 0-9 . _ : @ -")
    return trace_id


def check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
        raise InvalidNameError(f"prefix {prefix!r}: use 1-40 of A-Z a-z 0-9 . _ -")
    return prefix


def encode_json(value: Any, field: str, max_bytes: int) -> str:
    """Encode ``value`` as plain JSON (no NaN, no tagged types) or raise naming ``field``."""
    try:
        encoded = json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidJobDataError(f"{field}: not JSON-serialisable ({exc})") from None
    if len(encoded) > max_bytes // 4 and len(encoded.encode("utf-8")) > max_bytes:
        raise InvalidJobDataError(
            f"{field}: {len(encoded.encode('utf-8'))} bytes encoded, over the limit of {max_bytes}")
    return encoded


def check_cron(expression: str | None) -> str | None:
    """A 5-field cron expression that fires at least once; ValueError naming ``cron`` otherwise."""
    if expression is None:
        return None
    if not isinstance(expression, str) or len(expression.split()) != 5:
        raise ValueError(f"cron: {expression!r} must have exactly 5 fields (minute hour day month weekday)")
    try:
        croniter(expression, datetime(2000, 1, 1, tzinfo=timezone.utc)).get_next(datetime)
    except (ValueError, KeyError) as exc:  # croniter's errors are ValueErrors (not exported before 2.0.2)
        raise ValueError(f"cron: {expression!r} is not a valid expression that ever fires ({exc})") from None
    return expression


def check_zone(name: str) -> str:
    """An IANA time zone name such as ``Europe/Berlin``; ValueError naming ``tz`` otherwise."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"tz: unknown time zone {name!r} (use an IANA name such as 'Europe/Berlin')") from None
    return name
