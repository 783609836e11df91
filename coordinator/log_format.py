"""Structured logs: one JSON object per line for log shippers, readable text on a terminal.

Job lines (logger ``coordinator.job``, written by the worker runtime) carry ``queue``,
``job_id``, ``job_name``, ``attempt``, ``duration_ms``, ``trace_id`` and ``worker``. The level
comes from ``LOG_LEVEL`` (or `Settings.log_level`); ``JQC_LOG_FORMAT=json|text`` overrides the
choice made from whether the output is a terminal. Any URL password in a message or traceback
is replaced by ``***`` before the line is written.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from datetime import datetime, timezone
from typing import IO, Any

#: Fields of a job line, in the order the text format prints them.
JOB_FIELDS = ("queue", "job_id", "job_name", "attempt", "duration_ms", "trace_id", "worker")
#: Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:@/\s]*:)[^@\s]+@")
#: Marks the handler `configure_logging` installs, so a second call replaces it.
_HANDLER_NAME = "coordinator"


def redact(text: str) -> str:
    """``text`` with the password of any ``scheme://user:password@host`` replaced by ``***``."""
    return _URL_PASSWORD.sub(r"\g<head>***@", text)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {name: value for name, value in vars(record).items()
            if name not in _RECORD_ATTRS and not name.startswith("_") and value is not None}


def _redacted(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the ``extra=`` fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "pid": record.process,
        }
        line.update({name: _redacted(value) for name, value in _extras(record).items()})
        if record.exc_info:
            line["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(line, default=lambda value: redact(str(value)), ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value ...`` for people at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        extras = _extras(record)
        ordered = [name for name in JOB_FIELDS if name in extras] + sorted(set(extras) - set(JOB_FIELDS))
        text = super().format(record)
        if ordered:
            text += " " + " ".join(f"{name}={extras[name]}" for name in ordered)
        return redact(text)


def configure_logging(level: str | None = None, fmt: str | None = None, stream: IO[str] | None = None
                      ) -> logging.Handler:
    """Send the root logger's records to ``stream`` (stderr) as JSON lines, or as text when the
    stream is a terminal; level from ``level``, else ``LOG_LEVEL``, else INFO. Idempotent."""
    stream = stream or sys.stderr
    chosen = (fmt or os.environ.get("JQC_LOG_FORMAT") or ("text" if stream.isatty() else "json")).lower()
    handler = logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(TextFormatter() if chosen == "text" else JsonFormatter())
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if h.get_name() != _HANDLER_NAME]
    root.addHandler(handler)
    root.setLevel((level or os.environ.get("LOG_LEVEL") or "INFO").upper())
    return handler


def use_for_celery_worker(level: str) -> None:
    """Make a `celery worker` in this process log through `configure_logging` instead of its own
    setup (a receiver of Celery's ``setup_logging`` signal replaces it)."""
    from celery import signals

    def setup(loglevel: Any = None, **_: Any) -> None:
        configure_logging(level)

    signals.setup_logging.connect(setup, weak=False)
    configure_logging(level)
