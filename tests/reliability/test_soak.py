"""The short fixed-seed soak (`python -m bench.soak`): a mixed workload under random faults ends
with 0 violations, and every fault it recorded is proven to have happened."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.soak.history import read_history
from bench.soak.report import render
from bench.soak.run import Options, soak

#: Minutes of faulted workload in CI (the whole test takes about twice that with set-up and checks).
CI_MINUTES = float(os.environ.get("JQC_SOAK_MINUTES") or 0.75)
SEED = 21


def proven(fault: dict) -> bool:
    """What the injector saw that shows the fault happened."""
    detail = fault["detail"]
    return bool(detail.get("exited") or detail.get("killed") or detail.get("restarted")
                or detail.get("cut_off") or detail.get("pause_ms") or detail.get("new_pid"))


@pytest.mark.timeout(900)
def test_short_soak_ends_with_no_violation(tmp_path: Path, report) -> None:
    result = soak(Options(minutes=CI_MINUTES, seed=SEED, out=tmp_path))
    text = render(result, Options(minutes=CI_MINUTES, seed=SEED))
    print(text)
    verdict = result.verdict
    faults = [line for line in read_history(result.history) if line["k"] == "fault"]
    assert len(faults) >= 3, text  # the fault injector ran
    assert all(proven(fault) for fault in faults), [f for f in faults if not proven(f)]
    assert verdict.executions > 100 and verdict.cancels > 0, text  # the workload ran
    if os.environ.get("CI") == "true" and "link_cut" in result.unavailable:
        print(f"CI: link cuts not run: {result.unavailable['link_cut']}")
    assert verdict.violations == [], text
    assert text.splitlines()[-1] == f"soak: {sum(verdict.outcomes.values())} jobs, {len(faults)} faults, 0 violations"
    report.add(f"soak, seed {SEED}, {CI_MINUTES:g} min: {len(faults)} faults of "
               f"{len(verdict.faults)} kinds, mixed workload", sum(verdict.outcomes.values()),
               verdict.outcomes.get("waiting", 0) + verdict.outcomes.get("active", 0), 0,
               note=f"{sum(verdict.reruns.values())} re-runs after faults, 0 violations")
