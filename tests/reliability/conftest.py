"""The reliability suite: fault-injection scenarios, each adding a row to a report printed at the end.

Run alone with ``pytest -m reliability``; ``JQC_RELIABILITY_FULL=1`` runs the long scenarios at
full size (CI runs them smaller).
"""

from __future__ import annotations

import pytest

from tests.support.report import RELIABILITY, RowWriter


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/reliability/" in item.nodeid:
            item.add_marker(pytest.mark.reliability)


@pytest.fixture
def report(request: pytest.FixtureRequest) -> RowWriter:
    return RELIABILITY.writer(request.node)
