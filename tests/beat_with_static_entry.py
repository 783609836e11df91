"""A beat for an adopted app that has its own ``beat_schedule`` (``python -m
tests.beat_with_static_entry``): its entry sends ``legacy.add`` every second to the Celery queue
``<prefix>-static``, beside the coordinator's recurring jobs."""

from __future__ import annotations

import os

from celery import Celery

from coordinator import JobQueueCoordinator
from coordinator.beat import run_beat

if __name__ == "__main__":
    prefix = os.environ["JQC_PREFIX"]
    app = Celery("legacy-beat", broker=os.environ["REDIS_URL"], set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"], result_serializer="json",
                    beat_schedule={"add": {"task": "legacy.add", "schedule": 1.0, "args": (1, 2),
                                           "options": {"queue": f"{prefix}-static"}}})
    run_beat(JobQueueCoordinator.from_env(app=app), "INFO")
