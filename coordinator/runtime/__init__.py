"""Code that runs inside a Celery worker: the processor task, lock renewal, the sweeps."""
