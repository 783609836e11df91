"""The app's coordinator and its queues; imported by the API and the workers alike."""

from __future__ import annotations

from coordinator import Backoff, JobOptions, JobQueueCoordinator, QueueConfig, Retention

from photo_app.config import AppConfig

THUMBNAILS, METADATA, CLEANUP = "thumbnails", "metadata", "cleanup"

config = AppConfig.from_env()
#: Built from REDIS_URL (or REDIS_HOST/PORT/PASSWORD/DB/TLS), JQC_PREFIX, MAX_JOB_RETRIES, ...
#: Building it opens no connection, so importing this module is cheap and safe.
coord = JobQueueCoordinator.from_env()


def setup() -> None:
    """Create the queues and the recurring purge (idempotent: every process may call it at start)."""
    coord.create_queue(QueueConfig(
        name=THUMBNAILS,
        default_job_options=JobOptions(max_retries=3, backoff=Backoff(type="exponential", delay=1000), timeout=120),
        retention=Retention(completed_count=5000, completed_age_s=24 * 3600),
    ))
    coord.create_queue(QueueConfig(
        name=METADATA, default_job_options=JobOptions(max_retries=5, backoff=Backoff(type="exponential", delay=2000)),
    ))
    coord.create_queue(QueueConfig(name=CLEANUP, default_job_options=JobOptions(max_retries=1)))
    coord.schedule_recurring_job(CLEANUP, "purge-thumbnails", {"max_age_s": 7 * 24 * 3600},
                                 every=config.cleanup_every_ms, key="purge-thumbnails")
