"""The soak's checker: run after the system is quiet, against the history (what the clients were
told and what the processors saw, `bench.soak.history`) and the registry's final word (`Truth`,
read by `bench.soak.truth`). Pure: no Redis, no processes, so each rule is tested with a history
that plants one violation (tests/reliability/test_soak_checker.py).

What is checked is what docs/guarantees.md promises:

- **at-least-once, outcome recorded once**: every accepted job is final, with the outcome its
  kind promises, exactly one final event (completed | failed | cancelled), and a completed job's
  result comes from an execution that ran to its end with the job's last token;
- **token fencing**: one dispatch token runs at most once;
- **a job runs again only after a crash** ("a job that was running can run again" when its worker
  died, its connection was lost or Redis restarted): an execution that is not a retry of a
  failed attempt must follow a recorded fault that can cause one;
- **cancel**: nothing starts after `cancel_job` returned True (attempts already running count as
  in flight);
- **flows and batches**: a parent (or batch callback) runs after the last of its children ended,
  and never when a child failed under the ``fail`` policy;
- **dedup**: a key stands for one job at a time; **limits / group concurrency**: never exceeded;
- **recurring**: each tick has one run, named by its tick, counted once;
- **status**: `get_queue_status` counts equal the jobs' states; **memory** back to its baseline.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

FINAL_STATES = ("completed", "failed", "cancelled")
#: Fault kinds after which a job may legitimately run again (its attempt was cut off, its lock or
#: its finish was lost). A beat kill is not one: it stops ticks, not jobs.
RERUN_FAULTS = frozenset({"worker_sigkill", "worker_sigterm", "child_sigkill", "child_sigterm", "client_kill",
                          "client_pause", "redis_restart", "link_cut"})
#: Faults that cut the driver's own connection (a cancel answered then may be a repeat's answer).
CONNECTION_FAULTS = frozenset({"client_kill", "redis_restart"})
#: Seconds of slack around a fault's window when it explains a re-run (a lock lapses after the
#: fault that stopped its renewals, so the re-run comes later; the cut-off attempt began before).
EXPLAIN_SLACK_S = 1.0
#: Memory left after retention ran may exceed the baseline by this much (allocator slack, the
#: heartbeats and metrics written meanwhile), or by a quarter of the baseline if that is more.
MEMORY_SLACK_BYTES = 1 << 20


@dataclass
class JobTruth:
    """One job as the registry holds it after the run."""

    queue: str
    state: str
    result: Any = None
    final_events: int = 0
    finished_at: float | None = None
    schedule_key: str | None = None


@dataclass
class ScheduleTruth:
    """A recurring schedule and the runs it made (``(job id, tick ms)``)."""

    queue: str
    key: str
    every_ms: int
    run_count: int
    runs: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class Truth:
    """The registry's final word, read once the system is quiet."""

    jobs: dict[str, JobTruth] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    schedules: list[ScheduleTruth] = field(default_factory=list)
    memory_baseline: int = 0
    memory_final: int = 0
    leftover_jobs: list[str] = field(default_factory=list)
    """Jobs (``queue/state/id``) still in the registry after retention ran."""


@dataclass
class Execution:
    """One run of a processor: its start line and, unless it was cut off, its end line."""

    x: str
    job: str
    queue: str
    token: int
    start: float
    claimed: float
    end: float | None = None
    out: str | None = None
    limits: tuple[str, ...] = ()


@dataclass
class Violation:
    rule: str
    job: str
    detail: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.job}: {self.detail}"


@dataclass
class Verdict:
    """What the checker found: violations, and the figures of the report."""

    violations: list[Violation] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    reruns: Counter[str] = field(default_factory=Counter)
    """Executions beyond one (not retries), by the fault kind that explains them."""
    cancels_in_flight: int = 0
    cancels: int = 0
    doubtful_cancels: int = 0
    """Cancels answered False while the driver's connection was cut (the answer may be that of
    redis-py's repeat of a cancel that did happen): their jobs may end either way."""
    executions: int = 0

    def add(self, rule: str, job: str, detail: str) -> None:
        self.violations.append(Violation(rule, job, detail))


class History:
    """A history file's lines, indexed for the rules."""

    def __init__(self, lines: Iterable[dict[str, Any]]) -> None:
        self.calls: list[dict[str, Any]] = []
        self.faults: list[dict[str, Any]] = []
        self.executions: dict[str, Execution] = {}
        ends: dict[str, dict[str, Any]] = {}
        for line in lines:
            kind = line.get("k")
            if kind == "call":
                self.calls.append(line)
            elif kind == "fault":
                self.faults.append(line)
            elif kind == "start":
                self.executions[line["x"]] = Execution(
                    line["x"], line["job"], line["q"], int(line["tok"]), float(line["t"]),
                    float(line.get("claimed") or line["t"]), limits=tuple(line.get("limits") or ()))
            elif kind == "end":
                ends[line["x"]] = line
        for x, end in ends.items():
            if x in self.executions:
                self.executions[x].end, self.executions[x].out = float(end["t"]), end.get("out")
        self.by_job: dict[str, list[Execution]] = defaultdict(list)
        for execution in sorted(self.executions.values(), key=lambda e: (e.claimed, e.start)):
            self.by_job[execution.job].append(execution)

    def accepted(self) -> dict[str, str | None]:
        """Every job a call was told exists: job id -> the outcome its kind promises (None: any)."""
        promised: dict[str, str | None] = {}
        for call in self.calls:
            if call.get("ok"):
                for job_id, expect in (call.get("jobs") or {}).items():
                    promised.setdefault(job_id, expect)
        for call in self.calls:
            if call.get("op") != "cancel" or not call.get("ok"):
                continue
            if call.get("returned") is True:
                promised[call["job"]] = "cancelled"
            elif self.connection_cut(call) and promised.get(call["job"]) != "cancelled":
                promised[call["job"]] = None  # its answer may be a repeat's (see doubtful_cancels)
        return promised

    def connection_cut(self, call: dict[str, Any]) -> bool:
        """Whether the driver's connection may have been cut during ``call``: redis-py repeats a
        command whose reply was lost, and the repeat's answer is the one returned."""
        return any(fault["kind"] in CONNECTION_FAULTS and fault["t0"] <= call["t1"] and fault["t1"] >= call["t0"]
                   for fault in self.faults)


def check(lines: Iterable[dict[str, Any]], truth: Truth) -> Verdict:
    """Every rule of the module docstring, over a history and the registry's final word."""
    history = History(lines)
    verdict = Verdict()
    verdict.faults.update(f["kind"] for f in history.faults)
    verdict.executions = len(history.executions)
    promised = history.accepted()
    for schedule in truth.schedules:
        for job_id, _ in schedule.runs:
            promised.setdefault(job_id, "completed")
    check_outcomes(history, truth, promised, verdict)
    for job_id, job in truth.jobs.items():
        if job_id not in promised and job.state not in FINAL_STATES:
            verdict.add("unfinished", job_id, f"left {job.state}, made by no recorded call")
    check_executions(history, truth, verdict)
    check_cancels(history, verdict)
    check_waiters(history, verdict)
    check_dedup(history, truth, verdict)
    check_limits(history, verdict)
    check_schedules(truth, verdict)
    check_counts(truth, verdict)
    check_memory(truth, verdict)
    return verdict


def check_outcomes(history: History, truth: Truth, promised: dict[str, str | None], verdict: Verdict) -> None:
    """Final, as promised, one final event, and a completed result backed by an execution."""
    for job_id, expect in promised.items():
        job = truth.jobs.get(job_id)
        if job is None:
            verdict.add("unfinished", job_id, "accepted, but not in the registry")
            continue
        verdict.outcomes[job.state] += 1
        if job.state not in FINAL_STATES:
            verdict.add("unfinished", job_id, f"left {job.state}")
            continue
        if expect is not None and job.state != expect:
            verdict.add("outcome", job_id, f"promised {expect}, ended {job.state}")
        if job.final_events != 1:
            verdict.add("completion_records", job_id, f"{job.final_events} final events")
        if job.state == "completed" and isinstance(job.result, dict) and "x" in job.result:
            runs = history.by_job.get(job_id, [])
            backing = [e for e in runs if e.x == job.result["x"] and e.out == "ok"]
            if not backing or backing[0].token != max(e.token for e in runs):
                verdict.add("unbacked_result", job_id, f"result of execution {job.result['x']} which did not "
                            "complete with the job's last token")


def explaining_fault(history: History, before: Execution, after: Execution) -> str | None:
    """The kind of a recorded fault that can explain ``after`` running again after ``before``:
    one that struck while ``before`` ran or before its outcome was recorded (up to its end, or
    up to the re-run's claim when it never ended)."""
    until = (before.end if before.end is not None else after.claimed) + EXPLAIN_SLACK_S
    for fault in history.faults:
        if fault["kind"] in RERUN_FAULTS and fault["t0"] <= until and fault["t1"] >= before.start - EXPLAIN_SLACK_S:
            return str(fault["kind"])
    return None


def check_executions(history: History, truth: Truth, verdict: Verdict) -> None:
    """One run per token; a run after one that did not fail (a re-run) only after a fault."""
    for job_id, runs in history.by_job.items():
        tokens = Counter(e.token for e in runs)
        for token, count in tokens.items():
            if count > 1:
                verdict.add("same_token_rerun", job_id, f"token {token} ran {count} times")
        for before, after in pairwise(runs):
            if before.out in ("error",) and before.end is not None and before.end <= after.claimed:
                continue  # a retry of a failed attempt
            cause = explaining_fault(history, before, after)
            if cause is None:
                verdict.add("unexplained_rerun", job_id, f"ran again at {after.claimed:.3f} (token {after.token}) "
                            f"after a run that {'ended ' + str(before.out) if before.end else 'never ended'}, "
                            "with no fault recorded that explains it")
            else:
                verdict.reruns[cause] += 1


def check_cancels(history: History, verdict: Verdict) -> None:
    """Nothing claimed after a cancel returned True; runs claimed before it count as in flight."""
    for call in history.calls:
        if call.get("op") == "cancel" and call.get("ok") and call.get("returned") is False:
            verdict.doubtful_cancels += history.connection_cut(call)
        if call.get("op") != "cancel" or not call.get("ok") or call.get("returned") is not True:
            continue
        verdict.cancels += 1
        for run in history.by_job.get(call["job"], []):
            if run.claimed > call["t1"]:
                verdict.add("started_after_cancel", call["job"], f"claimed at {run.claimed:.3f}, "
                            f"cancel returned True at {call['t1']:.3f}")
            elif run.end is None or run.end > call["t0"]:
                verdict.cancels_in_flight += 1


def check_waiters(history: History, verdict: Verdict) -> None:
    """A flow parent or batch callback runs after its last child ended, and never when a child
    failed under the ``fail`` policy (it then fails itself)."""
    for call in history.calls:
        if not call.get("ok") or not call.get("waiter"):
            continue
        waiter, children = call["waiter"], call["children"]
        runs = history.by_job.get(waiter, [])
        if call.get("must_fail"):
            if runs:
                verdict.add("flow_order", waiter, "ran although a child failed under the fail policy")
            continue
        if not runs:
            continue  # reported by the outcome rule if it was promised to complete
        ends = [e.end for child in children for e in history.by_job.get(child, []) if e.end is not None]
        unended = [child for child in children if not any(e.end for e in history.by_job.get(child, []))]
        if unended:
            verdict.add("flow_order", waiter, f"ran though children {unended} never finished a run")
        elif ends and runs[0].claimed < max(ends):
            verdict.add("flow_order", waiter, f"claimed at {runs[0].claimed:.3f}, before its last child "
                        f"ended at {max(ends):.3f}")


def check_dedup(history: History, truth: Truth, verdict: Verdict) -> None:
    """A dedup key stands for one job: a call is answered with a new job only once the key's job
    finished (``until_finished``), its window passed (``ttl``: ``ttl_ms`` from the call that took
    the key) or it started (``debounce``). docs/deduplication.md."""
    by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for call in history.calls:
        if call.get("ok") and call.get("dedup") and call.get("id"):
            by_key[call["dedup"]["key"]].append(call)
    for key, calls in by_key.items():
        calls.sort(key=lambda c: c["t0"])
        standing = calls[0]
        for call in calls[1:]:
            if call["id"] == standing["id"]:
                continue
            mode = call["dedup"].get("mode", "until_finished")
            ttl_s = (standing["dedup"].get("ttl_ms") or 0) / 1000  # the window the standing job's call opened
            if mode == "until_finished":
                finished = (truth.jobs.get(standing["id"]) or JobTruth("", "")).finished_at
                if finished is None or finished > call["t1"]:
                    verdict.add("dedup", key, f"{call['id']} accepted at {call['t1']:.3f} while {standing['id']} "
                                "had not finished")
            elif mode == "ttl" and call["t1"] < standing["t0"] + ttl_s:
                verdict.add("dedup", key, f"{call['id']} accepted {call['t1'] - standing['t0']:.3f} s into the "
                            f"{ttl_s} s window of {standing['id']}")
            elif mode == "debounce":
                runs = history.by_job.get(standing["id"], [])
                if not runs or runs[0].claimed > call["t1"]:
                    verdict.add("dedup", key, f"{call['id']} accepted at {call['t1']:.3f} before {standing['id']} "
                                "started")
            standing = call


def check_limits(history: History, verdict: Verdict) -> None:
    """At no instant do more runs hold a limiter (or a group, or a queue's concurrency) than its
    maximum. Counted over runs that ended, from processor start to end (inside the registry's
    hold), leaving out a run another run of its job superseded (its lock had lapsed)."""
    maxima: dict[str, int] = {}
    for call in history.calls:
        if call.get("ok") and call.get("limit"):
            maxima[call["limit"]] = int(call["max"])
    if not maxima:
        return
    superseded = {e.x for runs in history.by_job.values() for e, later in pairwise(runs)
                  if e.end is None or later.claimed < e.end}
    edges: dict[str, list[tuple[float, int, str]]] = defaultdict(list)
    for execution in history.executions.values():
        if execution.end is None or execution.x in superseded:
            continue
        for name in execution.limits:
            edges[name] += [(execution.start, 1, execution.job), (execution.end, -1, execution.job)]
    for name, points in edges.items():
        if name not in maxima:
            continue
        held, worst = 0, 0
        for _, step, job_id in sorted(points, key=lambda p: (p[0], p[1])):
            held += step
            if held > maxima[name] and held > worst:
                worst = held
                verdict.add("limit", name, f"{held} runs at once (max {maxima[name]}), the last {job_id}")


def check_schedules(truth: Truth, verdict: Verdict) -> None:
    """Each tick one run, named by its tick, on the pattern, counted once in ``run_count``."""
    for schedule in truth.schedules:
        ticks = [tick for _, tick in schedule.runs]
        name = f"{schedule.queue}/{schedule.key}"
        for tick, count in Counter(ticks).items():
            if count > 1:
                verdict.add("recurring", name, f"tick {tick} has {count} runs")
        for job_id, tick in schedule.runs:
            if job_id != f"rep:{schedule.key}:{tick}":
                verdict.add("recurring", name, f"run {job_id} is not named by its tick {tick}")
            if schedule.every_ms and tick % schedule.every_ms:
                verdict.add("recurring", name, f"tick {tick} is off the every={schedule.every_ms} pattern")
        if schedule.run_count != len(schedule.runs):
            verdict.add("recurring", name, f"run_count {schedule.run_count}, {len(schedule.runs)} runs")


def check_counts(truth: Truth, verdict: Verdict) -> None:
    """get_queue_status counts equal the number of jobs in each state."""
    real: dict[str, Counter[str]] = defaultdict(Counter)
    for job in truth.jobs.values():
        real[job.queue][job.state] += 1
    for queue, counts in truth.counts.items():
        for state, count in counts.items():
            if count != real[queue][state]:
                verdict.add("status_counts", queue, f"{state}: get_queue_status says {count}, "
                            f"the jobs say {real[queue][state]}")


def check_memory(truth: Truth, verdict: Verdict) -> None:
    """After retention removed the finished jobs: no job left, memory back to the baseline."""
    if truth.leftover_jobs:
        verdict.add("memory", "redis", f"{len(truth.leftover_jobs)} jobs left after retention ran, e.g. "
                    f"{truth.leftover_jobs[:5]}")
    if not truth.memory_baseline:
        return
    allowed = truth.memory_baseline + max(MEMORY_SLACK_BYTES, truth.memory_baseline // 4)
    if truth.memory_final > allowed:
        verdict.add("memory", "redis", f"{truth.memory_final} B after retention, baseline "
                    f"{truth.memory_baseline} B (allowed {allowed} B)")
