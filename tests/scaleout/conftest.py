"""The scale-out suite: Sentinel failover, a Redis Cluster registry, network partitions between
worker hosts. Failover and partition scenarios add a row to a report printed at the end, like
the reliability suite's."""

from __future__ import annotations

import pytest

from tests.support.cluster import RedisClusterGroup
from tests.support.report import SCALEOUT, RowWriter


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/scaleout/" in item.nodeid:
            item.add_marker(pytest.mark.scaleout)


@pytest.fixture(scope="module")
def cluster():
    """A throwaway three-master Redis Cluster, one per test module."""
    with RedisClusterGroup() as group:
        yield group


@pytest.fixture
def scaleout_report(request: pytest.FixtureRequest) -> RowWriter:
    return SCALEOUT.writer(request.node)
