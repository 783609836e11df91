"""Targets of the CLI's --app option in tests."""

from __future__ import annotations

import os

from coordinator import JobQueueCoordinator


def make() -> JobQueueCoordinator:
    """A coordinator on the test Redis with the prefix the test put in JQC_CLI_PREFIX."""
    return JobQueueCoordinator(os.environ.get("JQC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
                               prefix=os.environ["JQC_CLI_PREFIX"])


not_a_coordinator = 42
