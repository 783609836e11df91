"""Reports of the fault-injection suites: one row per scenario, every figure counted in the run,
printed at the end of a pytest run (loaded as a plugin by tests/conftest.py).

A scenario's row travels on its test's report (``user_properties``), so the table is complete
whether the tests ran in this process or in pytest-xdist workers.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import pytest

FULL = os.environ.get("JQC_RELIABILITY_FULL") == "1"


def scaled(ci: int, full: int) -> int:
    """A scenario's job count: smaller in CI, full with JQC_RELIABILITY_FULL=1."""
    return full if FULL else ci


@dataclass
class Row:
    scenario: str
    sent: int
    lost: int
    duplicated: int
    recovery_s: float | None = None
    note: str = ""


class RowWriter:
    """What a scenario test gets: ``add(...)`` puts one row on the test's report."""

    def __init__(self, item: pytest.Item, title: str) -> None:
        self.item = item
        self.title = title

    def add(self, scenario: str, sent: int, lost: int, duplicated: int, recovery_s: float | None = None,
            note: str = "") -> None:
        self.item.user_properties.append((self.title, asdict(Row(scenario, sent, lost, duplicated, recovery_s, note))))


@dataclass
class Report:
    title: str
    rows: list[Row] = field(default_factory=list)

    def writer(self, item: pytest.Item) -> RowWriter:
        return RowWriter(item, self.title)

    def collect(self, test_report: pytest.TestReport) -> None:
        """Take the rows of a finished test (its teardown report carries every row it added)."""
        if test_report.when != "teardown":
            return
        self.rows.extend(Row(**value) for name, value in test_report.user_properties if name == self.title)

    def print(self, terminalreporter) -> None:  # type: ignore[no-untyped-def]
        """The table at the end of a pytest run, if any scenario added a row."""
        if not self.rows:
            return
        write = terminalreporter.write_line
        terminalreporter.section(self.title)
        write(f"{'scenario':<52} {'sent':>7} {'lost':>5} {'dup':>4} {'recovery s':>10}  note")
        for row in self.rows:
            recovery = "-" if row.recovery_s is None else f"{row.recovery_s:.1f}"
            write(f"{row.scenario:<52} {row.sent:>7} {row.lost:>5} {row.duplicated:>4} {recovery:>10}  {row.note}")


RELIABILITY = Report("reliability report")
SCALEOUT = Report("scale-out report")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for table in (RELIABILITY, SCALEOUT):
        table.collect(report)


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    for table in (RELIABILITY, SCALEOUT):
        table.print(terminalreporter)
