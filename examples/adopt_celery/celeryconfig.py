"""The team's Celery settings (unchanged by the migration)."""

import os

broker_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
result_backend = broker_url
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_expires = 3600
