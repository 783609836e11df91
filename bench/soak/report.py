"""The soak's report: jobs by outcome, faults by kind, re-runs and their causes, violations, the
seed to replay; the last line ``soak: <jobs> jobs, <faults> faults, <violations> violations``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.soak.faults import KINDS

if TYPE_CHECKING:
    from bench.soak.run import Options, Result

#: Violations listed one by one (the rest are counted by rule).
SHOWN = 30


def render(result: Result, options: Options) -> str:
    verdict = result.verdict
    faults = sum(verdict.faults.values())
    by_rule: dict[str, int] = {}
    for violation in verdict.violations:
        by_rule[violation.rule] = by_rule.get(violation.rule, 0) + 1
    lines = [
        f"soak: seed {options.seed}, {options.minutes:g} min, capacity {result.capacity:.1f} jobs/s "
        f"({'given' if options.capacity else 'measured'}), sent at {result.rate:.1f} jobs/s ({options.load:.0%})",
        f"  history: {result.history}",
        "  jobs by outcome: " + _counts(verdict.outcomes),
        "  faults by kind: " + ", ".join(f"{kind} {verdict.faults.get(kind, 0)}" for kind in KINDS
                                          if kind not in result.unavailable),
        *(f"  fault kind {kind} not run: {why}" for kind, why in result.unavailable.items()),
        f"  executions: {verdict.executions}; re-runs beyond one (not retries): {sum(verdict.reruns.values())}"
        + (" (" + _counts(verdict.reruns) + ")" if verdict.reruns else ""),
        f"  cancels answered True: {verdict.cancels} ({verdict.cancels_in_flight} of them with a run in flight); "
        f"answered False during a connection cut: {verdict.doubtful_cancels}",
        f"  Redis memory without event streams: baseline {result.memory[0] / 2**20:.1f} MiB, "
        f"after retention {result.memory[1] / 2**20:.1f} MiB; quiet {result.quiet_s:.0f} s after the workload",
        *(f"  note: {note}" for note in result.notes),
        "  violations: " + (_counts(by_rule) if by_rule else "none"),
        *(f"    {violation}" for violation in verdict.violations[:SHOWN]),
        f"  replay: python -m bench.soak --minutes {options.minutes:g} --seed {options.seed}"
        + (f" --capacity {options.capacity:g}" if options.capacity else ""),
        f"soak: {sum(verdict.outcomes.values())} jobs, {faults} faults, {len(verdict.violations)} violations",
    ]
    return "\n".join(lines)


def _counts(counter: dict[str, int]) -> str:
    return ", ".join(f"{key} {value}" for key, value in sorted(counter.items(), key=lambda kv: -kv[1])) or "none"
