"""Example: a team's existing Celery app, adopted by the coordinator without rewriting its tasks."""
