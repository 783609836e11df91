"""The reliability suite: fault-injection scenarios, each adding a row to a report printed at the end.

Run alone with ``pytest -m reliability``; ``JQC_RELIABILITY_FULL=1`` runs the long scenarios at
full size (CI runs them smaller).
"""

from __future__ import annotations

import pytest

from tests.support.report import Report

REPORT = Report()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/reliability/" in item.nodeid:
            item.add_marker(pytest.mark.reliability)


@pytest.fixture
def report() -> Report:
    return REPORT


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    REPORT.print(terminalreporter, "reliability report")
