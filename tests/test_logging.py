"""Structured logs of a real worker (JSON lines with the trace id, no password) and trace context."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import uuid
from pathlib import Path

import pytest

from coordinator import JobQueueCoordinator
from coordinator.log_format import JsonFormatter, TextFormatter, configure_logging, redact
from tests import obs_processors
from tests.support.servers import redis_server

PASSWORD = "pw-" + uuid.uuid4().hex[:10]


def json_lines(path: Path) -> list[dict]:
    """Every line of the log that is a JSON object (Celery's start banner is plain text)."""
    lines = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_worker_logs_json_lines_with_trace_id_and_no_password() -> None:
    with redis_server(password=PASSWORD) as url:
        coord = JobQueueCoordinator(url, prefix=f"l{uuid.uuid4().hex[:8]}", log_level="INFO")
        try:
            coord.create_queue("logs")
            worker = coord.register_worker("logs", obs_processors.trace_headers, pool="solo", concurrency=1)
            job = coord.enqueue_job("logs", {}, name="traced", trace_id="trace-log-1")
            done = coord.wait_for_job("logs", job.id, timeout=30)
            assert done.state.value == "completed"
            coord.close_worker(worker.id, timeout=10)
        finally:
            coord.shutdown(timeout=10)
        log_file = Path(worker.log_file or "")
        text = log_file.read_text()
        assert PASSWORD not in text
        lines = json_lines(log_file)
        job_lines = [line for line in lines if line.get("job_id") == job.id]
        by_message = {line["message"]: line for line in job_lines}
        assert {"job started", "processing with trace", "job completed"} <= set(by_message)
        completed = by_message["job completed"]
        assert completed["logger"] == "coordinator.job" and completed["level"] == "INFO"
        assert completed["trace_id"] == "trace-log-1"
        assert completed["queue"] == "logs" and completed["job_name"] == "traced"
        assert completed["attempt"] == 1 and isinstance(completed["duration_ms"], int)
        assert completed["worker"] == worker.node_name
        # the worker's own Celery lines are JSON too (through the same handler)
        assert any(line["logger"].startswith("celery") for line in lines)


def test_trace_context_reaches_the_worker(coord: JobQueueCoordinator) -> None:
    coord.create_queue("trace")
    coord.register_worker("trace", obs_processors.trace_headers, pool="solo", concurrency=1)
    made = coord.enqueue_job("trace", {})
    given = coord.enqueue_job("trace", {}, trace_id="order-42")
    for job in (made, given):
        coord.wait_for_job("trace", job.id, timeout=30)
    made_result = coord.get_job("trace", made.id)
    assert made_result is not None and made_result.trace_id == made.trace_id
    assert re.fullmatch(r"[0-9a-f]{32}", made.trace_id or "")
    assert made_result.result["trace_id"] == made.trace_id
    version, trace_hex, span_hex, flags = made_result.result["traceparent"].split("-")
    assert (version, trace_hex, flags) == ("00", made.trace_id, "01")
    assert re.fullmatch(r"[0-9a-f]{16}", span_hex)
    given_result = coord.get_job("trace", given.id)
    assert given_result is not None and given_result.result["trace_id"] == "order-42"
    assert given_result.result["traceparent"].split("-")[1] == hashlib.sha1(b"order-42").hexdigest()[:32]


def record(message: str, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("coordinator.job", logging.INFO, __file__, 1, message, None, None)
    for name, value in extra.items():
        setattr(rec, name, value)
    return rec


def test_formatters_redact_urls_and_keep_job_fields() -> None:
    rec = record("connect to redis://user:hunter2@db:6379/0 failed", queue="q", job_id="j1", trace_id="t1",
                 attempt=2)
    line = json.loads(JsonFormatter().format(rec))
    assert line["message"] == "connect to redis://user:***@db:6379/0 failed"
    assert (line["queue"], line["job_id"], line["trace_id"], line["attempt"]) == ("q", "j1", "t1", 2)
    text = TextFormatter().format(rec)
    assert "hunter2" not in text and text.index("queue=q") < text.index("job_id=j1")
    assert redact("amqp://guest:guest@rabbit:5672//") == "amqp://guest:***@rabbit:5672//"
    assert redact("no url here") == "no url here"
    try:
        raise ValueError("bad redis://:topsecret@h:1/0")
    except ValueError:
        import sys

        rec.exc_info = sys.exc_info()
    assert "topsecret" not in JsonFormatter().format(rec)


def test_configure_logging_level_and_format(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    try:
        monkeypatch.setenv("LOG_LEVEL", "WARNING")
        monkeypatch.delenv("JQC_LOG_FORMAT", raising=False)
        stream = io.StringIO()  # not a terminal: JSON
        configure_logging(stream=stream)
        configure_logging(stream=stream)  # idempotent: one handler
        assert sum(1 for h in root.handlers if h.get_name() == "coordinator") == 1
        logging.getLogger("coordinator.job").info("dropped")
        logging.getLogger("coordinator.job").warning("kept", extra={"job_id": "j9"})
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert [(x["message"], x["job_id"]) for x in lines] == [("kept", "j9")]
        monkeypatch.setenv("JQC_LOG_FORMAT", "text")
        text_stream = io.StringIO()
        configure_logging(stream=text_stream)
        logging.getLogger("coordinator.job").warning("readable", extra={"job_id": "j10"})
        assert "WARNING coordinator.job: readable job_id=j10" in text_stream.getvalue()
    finally:
        root.setLevel(saved[0])
        root.handlers = saved[1]
