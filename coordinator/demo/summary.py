"""The demo's closing summary, read from the registry (not counted by the demo), and its rendering."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from pydantic import BaseModel
from rich import box
from rich.console import Console
from rich.table import Table

from coordinator import JobQueueCoordinator, JobState, QueueCounts, RecurringJob

ALL_STATES = [state.value for state in JobState]


class JobOutcome(BaseModel):
    """Where one job ended, as its registry record says."""

    queue: str
    id: str
    name: str
    state: JobState
    priority: int
    delay_ms: int = 0
    attempts_made: int
    failed_reason: str | None = None
    created_at: datetime
    processed_on: datetime | None = None
    finished_on: datetime | None = None
    schedule_key: str | None = None

    @property
    def run_ms(self) -> float | None:
        """Time of the last attempt, start to finish."""
        if self.processed_on is None or self.finished_on is None:
            return None
        return (self.finished_on - self.processed_on).total_seconds() * 1000


class QueueSummary(BaseModel):
    name: str
    counts: QueueCounts
    workers: int
    average_processing_ms: float


class DemoSummary(BaseModel):
    """What ran, how long it took, and where each job ended."""

    prefix: str
    redis_url: str
    own_redis: bool
    finished: bool
    interrupted: bool = False
    setup_s: float = 0.0
    wall_s: float = 0.0
    queues: list[QueueSummary] = []
    jobs: list[JobOutcome] = []
    recurring: list[RecurringJob] = []
    notes: list[str] = []

    @property
    def span_s(self) -> float:
        """First job created to last job finished, from the job records."""
        finished = [job.finished_on for job in self.jobs if job.finished_on]
        if not finished:
            return 0.0
        return (max(finished) - min(job.created_at for job in self.jobs)).total_seconds()

    def job(self, queue: str, job_id: str) -> JobOutcome | None:
        return next((job for job in self.jobs if job.queue == queue and job.id == job_id), None)

    @property
    def exit_code(self) -> int:
        """0 when every job reached a final state; 130 when interrupted; 1 otherwise."""
        if self.interrupted:
            return 130
        return 0 if self.finished else 1


def read_summary(coord: JobQueueCoordinator, queues: list[str], schedules: list[tuple[str, str]],
                 **fields: object) -> DemoSummary:
    """Build the summary from the registry: every job of the demo's queues, their counts, and the
    recurring ``schedules`` given as (queue, key)."""
    jobs: list[JobOutcome] = []
    summaries = []
    for queue in queues:
        status = coord.get_queue_status(queue)
        summaries.append(QueueSummary(
            name=queue, counts=status.counts, workers=status.workers,
            average_processing_ms=status.health.metrics.average_processing_time,
        ))
        for job in coord.get_jobs(queue, ALL_STATES, asc=True):
            jobs.append(JobOutcome(
                queue=queue, id=job.id, name=job.name, state=job.state, priority=job.options.priority,
                delay_ms=job.options.delay,
                attempts_made=job.attempts_made, failed_reason=job.failed_reason,
                created_at=job.created_at, processed_on=job.processed_on,
                finished_on=job.finished_on, schedule_key=job.schedule_key,
            ))
    recurring = [entry for queue in sorted({queue for queue, _ in schedules})
                 for entry in coord.get_recurring_jobs(queue) if (queue, entry.key) in schedules]
    return DemoSummary(queues=summaries, jobs=jobs, recurring=recurring, **fields)


def render_summary(console: Console, summary: DemoSummary) -> None:
    """Print the summary: per-queue counts, jobs grouped by where they ended, the notable ones."""
    console.print()
    headline = "interrupted" if summary.interrupted else ("done" if summary.finished else "NOT finished")
    console.print(
        f"[bold]Demo {headline}[/]: {len(summary.jobs)} jobs in the registry; first created to last "
        f"finished {summary.span_s:.1f} s (setup {summary.setup_s:.1f} s, whole run {summary.wall_s:.1f} s)",
        soft_wrap=True,
    )
    console.print(_queue_table(summary))
    console.print(_outcome_table(summary))
    for line in _waits_by_priority(summary):
        console.print(line, highlight=False, soft_wrap=True)
    stories = [(job, _story(job)) for job in summary.jobs]
    if any(story for _, story in stories):
        console.print("[bold]Jobs with a story[/]")
    for job, story in stories:
        if story:
            tries = f"{job.attempts_made} attempt" + ("" if job.attempts_made == 1 else "s")
            console.print(f"  {job.queue}/{job.id} ({job.name}, {tries}): {story}",
                          highlight=False, soft_wrap=True)
    for entry in summary.recurring:
        every = f"every {entry.every} ms" if entry.every else f"cron {entry.cron}"
        console.print(f"recurring [bold]{entry.key}[/] on {entry.queue} ({every}, limit {entry.limit}): "
                      f"{entry.run_count} runs")
    for note in summary.notes:
        console.print(f"[dim]{note}[/]")


def _queue_table(summary: DemoSummary) -> Table:
    table = Table(title="Queues (from the registry)", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  collapse_padding=True)
    for column in ("queue", *ALL_STATES, "avg ms"):
        table.add_column(column, justify="left" if column == "queue" else "right", no_wrap=True)
    for queue in summary.queues:
        counts = queue.counts.model_dump()
        table.add_row(queue.name, *(str(counts[state]) for state in ALL_STATES),
                      f"{queue.average_processing_ms:.0f}")
    return table


def _outcome_table(summary: DemoSummary) -> Table:
    """Jobs grouped by queue, name, priority and final state."""
    groups = Counter((job.queue, job.name, job.priority, job.state.value, job.attempts_made) for job in summary.jobs)
    table = Table(title="Where each job ended", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  collapse_padding=True)
    for column in ("queue", "job name", "priority", "state", "attempts", "jobs"):
        table.add_column(column)
    for (queue, name, priority, state, attempts), count in sorted(groups.items()):
        style = {"failed": "red", "completed": "green"}.get(state, "yellow")
        table.add_row(queue, name, str(priority), f"[{style}]{state}[/]", str(attempts), str(count))
    return table


def _waits_by_priority(summary: DemoSummary) -> list[str]:
    """Per queue, the mean time from enqueue to start of each priority's undelayed jobs."""
    lines = []
    for queue in summary.queues:
        waits: dict[int, list[float]] = {}
        for job in summary.jobs:
            if job.queue == queue.name and job.processed_on and not job.delay_ms and job.attempts_made == 1:
                waits.setdefault(job.priority, []).append((job.processed_on - job.created_at).total_seconds())
        if len(waits) > 1:
            means = ", ".join(f"priority {priority} {sum(w) / len(w):.1f} s" for priority, w in sorted(waits.items()))
            lines.append(f"{queue.name}: mean wait from enqueue to start: {means}")
    return lines


def _story(job: JobOutcome) -> str:
    if job.state is JobState.FAILED:
        return f"failed: {job.failed_reason}"
    if job.attempts_made > 1:
        return f"recovered on attempt {job.attempts_made} after: {job.failed_reason}"
    if job.schedule_key:
        return f"fired by schedule {job.schedule_key}"
    if job.delay_ms and job.processed_on:
        waited = (job.processed_on - job.created_at).total_seconds()
        return f"delayed {job.delay_ms} ms: started {waited:.1f} s after it was created"
    return ""
