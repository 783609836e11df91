"""Processors for the observability tests (imported by worker subprocesses)."""

from __future__ import annotations

import logging

from celery import current_task

from coordinator import Job

log = logging.getLogger("tests.obs")


def maybe_fail(job: Job) -> str:
    """Fail when data['fail'] is true, else succeed."""
    if (job.data or {}).get("fail"):
        raise RuntimeError("asked to fail")
    return "ok"


def trace_headers(job: Job) -> dict:
    """The trace headers of the Celery message that ran this job, and a log line on the way."""
    request = current_task.request
    log.info("processing with trace", extra={"trace_id": job.trace_id, "job_id": job.id})
    return {"trace_id": getattr(request, "trace_id", None), "traceparent": getattr(request, "traceparent", None)}
