"""Processors for the dashboard's browser tests (importable by the managed worker)."""

from __future__ import annotations

import os
import time

from coordinator import Job, UnrecoverableError


def work(job: Job) -> dict:
    """Sleep data['seconds']; fail for good while the file data['needs'] does not exist."""
    data = job.data if isinstance(job.data, dict) else {}
    time.sleep(float(data.get("seconds", 0.05)))
    needs = data.get("needs")
    if needs and not os.path.exists(needs):
        raise UnrecoverableError(f"missing {needs}")
    job.log("done")
    return {"ok": True}
