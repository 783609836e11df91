"""Benchmark of the coordinator against raw Celery, on one dedicated Redis, in one run.

Run it with ``python -m bench`` (``--jobs N --runs K``, ``--quick`` for a smoke run); see
BENCHMARKS.md for what each figure means.
"""
