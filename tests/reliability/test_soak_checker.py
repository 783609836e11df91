"""The soak's checker (`bench.soak.checker`) catches each kind of violation: a clean history passes,
and the same history with one planted violation fails on exactly that rule. No Redis, no workers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from bench.soak.checker import JobTruth, ScheduleTruth, Truth, check

Lines = list[dict[str, Any]]


def call(op: str, t0: float, jobs: dict[str, str] | None = None, **fields: Any) -> dict[str, Any]:
    return {"k": "call", "op": op, "t0": t0, "t1": t0 + 0.1, "ok": True, "jobs": jobs or {}, **fields}


def run(job: str, x: str, claimed: float, end: float | None, out: str = "ok", tok: int = 1,
        limits: tuple[str, ...] = ()) -> Lines:
    lines = [{"k": "start", "x": x, "job": job, "q": "main", "tok": tok, "claimed": claimed, "t": claimed + 0.01,
              "limits": list(limits)}]
    if end is not None:
        lines.append({"k": "end", "x": x, "job": job, "q": "main", "tok": tok, "t": end, "out": out})
    return lines


def done(result_x: str | None = None, state: str = "completed", finished: float = 0.0) -> JobTruth:
    return JobTruth("main", state, {"x": result_x} if result_x else None, 1, finished)


def clean() -> tuple[Lines, Truth]:
    """A history of every feature in which every rule holds."""
    lines: Lines = [
        call("set_limiter", 0.5, limit="api:x", max=2),
        call("enqueue", 1, {"a": "completed"}),
        *run("a", "xa", 2, 2.5, limits=("api:x",)),
        call("add_flow", 2.9, {"p": "completed", "c1": "completed", "c2": "completed"}, waiter="p",
             children=["c1", "c2"], must_fail=False),
        *run("c1", "xc1", 3, 3.5, limits=("api:x",)),
        *run("c2", "xc2", 3, 3.6, limits=("api:x",)),
        *run("p", "xp", 4, 4.2),
        call("add_flow", 2.9, {"q": "failed", "f1": "failed"}, waiter="q", children=["f1"], must_fail=True),
        *run("f1", "xf1", 3, 3.2, out="fatal"),
        call("enqueue", 4.5, {"k": "completed"}),
        *run("k", "xk", 5, 5.3, out="cancelled"),
        call("cancel", 5.1, job="k", returned=True),
        call("enqueue", 5.5, {"r": "completed"}),
        *run("r", "xr1", 6, 6.1, out="error", tok=1),
        *run("r", "xr2", 6.5, 6.6, tok=2),
        call("enqueue", 6.5, {"s": "completed"}),
        *run("s", "xs1", 7, None, tok=1),
        {"k": "fault", "kind": "worker_sigkill", "t0": 7.2, "t1": 7.3, "detail": {}},
        *run("s", "xs2", 10, 10.1, tok=2),
        call("enqueue", 1, {"d1": "completed"}, id="d1", dedup={"key": "u7", "mode": "until_finished"}),
        call("enqueue", 1.5, {"d1": "completed"}, id="d1", dedup={"key": "u7", "mode": "until_finished"}),
        *run("d1", "xd1", 1.6, 1.9),
        call("enqueue", 3, {"d2": "completed"}, id="d2", dedup={"key": "u7", "mode": "until_finished"}),
        *run("d2", "xd2", 3.2, 3.3),
        call("enqueue", 1, {"t1": "completed"}, id="t1", dedup={"key": "w", "mode": "ttl", "ttl_ms": 1000}),
        call("enqueue", 2.5, {"t2": "completed"}, id="t2", dedup={"key": "w", "mode": "ttl", "ttl_ms": 5000}),
        *run("t1", "xt1", 1.2, 1.3), *run("t2", "xt2", 2.7, 2.8),
        call("enqueue", 1, {"b1": "completed"}, id="b1", dedup={"key": "v", "mode": "debounce", "ttl_ms": 500}),
        call("enqueue", 1.3, {"b1": "completed"}, id="b1", dedup={"key": "v", "mode": "debounce", "ttl_ms": 500}),
        *run("b1", "xb1", 1.8, 1.9),
        call("enqueue", 1.85, {"b2": "completed"}, id="b2", dedup={"key": "v", "mode": "debounce", "ttl_ms": 500}),
        *run("b2", "xb2", 2.4, 2.5),
        *run("rep:tick:2000", "xtick1", 2, 2.1), *run("rep:tick:4000", "xtick2", 4, 4.1),
    ]
    jobs = {"a": done("xa"), "p": done("xp"), "c1": done("xc1"), "c2": done("xc2"), "q": done(state="failed"),
            "f1": done(state="failed"), "k": done(state="cancelled"), "r": done("xr2"), "s": done("xs2"),
            "d1": done("xd1", finished=2.0), "d2": done("xd2", finished=3.4), "t1": done("xt1"),
            "t2": done("xt2"), "b1": done("xb1"), "b2": done("xb2"), "rep:tick:2000": done("xtick1"),
            "rep:tick:4000": done("xtick2")}
    states = Counter(job.state for job in jobs.values())
    truth = Truth(jobs=jobs, counts={"main": {"waiting": 0, "active": 0, **states}},
                  schedules=[ScheduleTruth("main", "tick", 2000, 2,
                                           [("rep:tick:2000", 2000), ("rep:tick:4000", 4000)])],
                  memory_baseline=2 << 20, memory_final=(2 << 20) + 100_000)
    return lines, truth


def test_a_clean_history_has_no_violation() -> None:
    lines, truth = clean()
    verdict = check(lines, truth)
    assert verdict.violations == []
    assert verdict.reruns == {"worker_sigkill": 1}  # s ran again after its worker was killed
    assert (verdict.cancels, verdict.cancels_in_flight) == (1, 1)
    assert verdict.outcomes == {"completed": 14, "failed": 2, "cancelled": 1}


def _state(job: str, state: str) -> Callable[[Lines, Truth], None]:
    def plant(lines: Lines, truth: Truth) -> None:
        truth.jobs[job].state = state
    return plant


def _final_events(lines: Lines, truth: Truth) -> None:
    truth.jobs["a"].final_events = 2


def _unbacked(lines: Lines, truth: Truth) -> None:
    truth.jobs["r"].result = {"x": "xr1"}  # the failed attempt's run


def _same_token(lines: Lines, truth: Truth) -> None:
    lines += run("a", "xa-again", 2.6, 2.7, tok=1)


def _unexplained(lines: Lines, truth: Truth) -> None:
    lines += run("a", "xa-again", 9, 9.1, tok=2)  # the fault at 7.2 came after a's run had ended


def _after_cancel(lines: Lines, truth: Truth) -> None:
    lines += run("k", "xk2", 5.5, 5.6, tok=2)


def _parent_early(lines: Lines, truth: Truth) -> None:
    lines[:] = [line for line in lines if line.get("x") != "xp"] + run("p", "xp", 3.55, 3.7)


def _parent_ran_after_failure(lines: Lines, truth: Truth) -> None:
    lines += run("q", "xq", 4, 4.1)


def _dedup_until_finished(lines: Lines, truth: Truth) -> None:
    truth.jobs["d1"].finished_at = 3.5  # still standing when d2 was accepted at 3.1


def _dedup_ttl(lines: Lines, truth: Truth) -> None:
    for line in lines:
        if line.get("id") == "t2":
            line["t0"], line["t1"] = 1.5, 1.6  # inside t1's 1 s window


def _dedup_debounce(lines: Lines, truth: Truth) -> None:
    for line in lines:
        if line.get("id") == "b2":
            line["t0"], line["t1"] = 1.6, 1.7  # b1 had not started (it started at 1.8)


def _limit(lines: Lines, truth: Truth) -> None:
    lines[0]["max"] = 1  # c1 and c2 held api:x together


def _recurring_tick_twice(lines: Lines, truth: Truth) -> None:
    schedule = truth.schedules[0]
    schedule.runs.append(("rep:tick:4000", 4000))
    schedule.run_count = 3


def _recurring_count(lines: Lines, truth: Truth) -> None:
    truth.schedules[0].run_count = 3


def _status_counts(lines: Lines, truth: Truth) -> None:
    truth.counts["main"]["completed"] += 1


def _memory(lines: Lines, truth: Truth) -> None:
    truth.memory_final = 5 << 20


def _leftover(lines: Lines, truth: Truth) -> None:
    truth.leftover_jobs = ["main/completed/a"]


PLANTED = {
    "unfinished": _state("a", "active"),
    "outcome": _state("a", "failed"),
    "completion_records": _final_events,
    "unbacked_result": _unbacked,
    "same_token_rerun": _same_token,
    "unexplained_rerun": _unexplained,
    "started_after_cancel": _after_cancel,
    "flow_order": _parent_early,
    "flow_order/fail_policy": _parent_ran_after_failure,
    "dedup": _dedup_until_finished,
    "dedup/ttl": _dedup_ttl,
    "dedup/debounce": _dedup_debounce,
    "limit": _limit,
    "recurring": _recurring_tick_twice,
    "recurring/run_count": _recurring_count,
    "status_counts": _status_counts,
    "memory": _memory,
    "memory/leftover": _leftover,
}


@pytest.mark.parametrize("planted", list(PLANTED))
def test_a_planted_violation_is_caught_by_its_rule(planted: str) -> None:
    lines, truth = clean()
    PLANTED[planted](lines, truth)
    rules = {violation.rule for violation in check(lines, truth).violations}
    rule = planted.split("/")[0]
    assert rule in rules
    assert rules - {rule} <= ALSO.get(rule, set())


#: Rules a planted violation may trip as well, as a consequence of the same plant.
ALSO = {
    "unfinished": {"status_counts"},      # a job left active is counted active
    "outcome": {"status_counts"},
    "same_token_rerun": {"unexplained_rerun"},
    "unexplained_rerun": {"unbacked_result"},  # the result is the first run's, not the last token's
    "started_after_cancel": {"unexplained_rerun"},
}


def test_a_run_again_explained_by_a_fault_is_counted_not_flagged() -> None:
    lines, truth = clean()
    lines += [{"k": "fault", "kind": "redis_restart", "t0": 2.4, "t1": 4.0, "detail": {}},
              *run("a", "xa2", 4.5, 4.6, tok=2)]
    truth.jobs["a"].result = {"x": "xa2"}
    verdict = check(lines, truth)
    assert verdict.violations == []
    assert verdict.reruns == {"worker_sigkill": 1, "redis_restart": 1}


def test_a_cancel_answered_false_during_a_connection_cut_promises_nothing() -> None:
    """redis-py repeats a script whose reply was lost: the repeat of a cancel that happened answers
    False. Such a job may end cancelled; out of a cut, False still means it must not."""
    lines, truth = clean()
    lines += [call("enqueue", 8, {"m": "completed"}), call("cancel", 8.5, job="m", returned=False)]
    truth.jobs["m"] = done(state="cancelled")
    truth.counts["main"]["cancelled"] += 1
    assert [v.rule for v in check(lines, truth).violations] == ["outcome"]
    lines.append({"k": "fault", "kind": "client_kill", "t0": 8.4, "t1": 9.0, "detail": {}})
    verdict = check(lines, truth)
    assert verdict.violations == [] and verdict.doubtful_cancels == 1


def test_a_beat_kill_explains_no_rerun() -> None:
    lines, truth = clean()
    lines += [{"k": "fault", "kind": "beat_kill", "t0": 2.2, "t1": 3.0, "detail": {}},
              *run("a", "xa2", 4.5, 4.6, tok=2)]
    truth.jobs["a"].result = {"x": "xa2"}
    assert [v.rule for v in check(lines, truth).violations] == ["unexplained_rerun"]
