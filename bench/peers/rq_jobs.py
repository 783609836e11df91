"""The trivial job RQ's workers import (the same work as `bench.celery_side`'s ``noop``)."""


def noop(data):
    """Take the payload, do nothing."""
    return None
