"""Reports of the fault-injection suites: one row per scenario, every figure counted in the run,
printed at the end of a pytest run."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

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


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)

    def add(self, scenario: str, sent: int, lost: int, duplicated: int, recovery_s: float | None = None,
            note: str = "") -> None:
        self.rows.append(Row(scenario, sent, lost, duplicated, recovery_s, note))

    def print(self, terminalreporter, title: str) -> None:  # type: ignore[no-untyped-def]
        """The table at the end of a pytest run, if any scenario added a row."""
        if not self.rows:
            return
        write = terminalreporter.write_line
        terminalreporter.section(title)
        write(f"{'scenario':<52} {'sent':>7} {'lost':>5} {'dup':>4} {'recovery s':>10}  note")
        for row in self.rows:
            recovery = "-" if row.recovery_s is None else f"{row.recovery_s:.1f}"
            write(f"{row.scenario:<52} {row.sent:>7} {row.lost:>5} {row.duplicated:>4} {recovery:>10}  {row.note}")
