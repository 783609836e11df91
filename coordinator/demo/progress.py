"""Live progress of the demo: rich progress bars and a status table on a terminal, plain lines otherwise."""

from __future__ import annotations

import time
from types import TracebackType

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from coordinator import QueueStatus, WorkerStatus

#: Seconds between two plain progress lines when the output is not a terminal.
PLAIN_INTERVAL_S = 1.0


class LiveView:
    """Shows each queue's progress towards its expected job count, from registry snapshots."""

    def __init__(self, console: Console, expected: dict[str, int], uploads: int = 0) -> None:
        self.console = console
        self.expected = expected
        self.fancy = console.is_terminal
        self._progress = Progress(
            TextColumn("[bold]{task.description:<11}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=console,
        )
        self._uploads = self._progress.add_task("uploads", total=uploads, detail="")
        self._tasks: dict[str, TaskID] = {
            queue: self._progress.add_task(queue, total=total, detail="") for queue, total in expected.items()
        }
        self._live = Live(self._progress, console=console, refresh_per_second=8) if self.fancy else None
        self._last_line = ""
        self._uploaded = 0
        self._last_print = 0.0
        self._started = time.monotonic()

    def __enter__(self) -> LiveView:
        if self._live is not None:
            self._live.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, tb)

    def update(self, statuses: dict[str, QueueStatus], workers: list[WorkerStatus], uploaded: int = 0) -> None:
        """Redraw (terminal) or print a line when something changed, at most once a second (plain)."""
        self._uploaded = uploaded
        self._progress.update(self._uploads, completed=uploaded)
        for queue, status in statuses.items():
            counts = status.counts
            finished = counts.completed + counts.failed + counts.cancelled
            detail = f"[red]{counts.failed} failed[/]" if counts.failed else ""
            self._progress.update(self._tasks[queue], completed=finished, detail=detail)
        if self._live is not None:
            self._live.update(Group(self._progress, status_table(statuses, workers)))
            return
        self._print_line(statuses, force=False)

    def finish(self, statuses: dict[str, QueueStatus]) -> None:
        """Print the last state in plain mode, even if a line was printed less than a second ago."""
        if self._live is None:
            self._print_line(statuses, force=True)

    def _print_line(self, statuses: dict[str, QueueStatus], force: bool) -> None:
        uploads = f"uploads {self._uploaded}/{self._progress.tasks[self._uploads].total:.0f} | "
        line = uploads + plain_line(statuses, self.expected)
        now = time.monotonic()
        if line != self._last_line and (force or now - self._last_print >= PLAIN_INTERVAL_S):
            self.console.print(f"[{now - self._started:5.1f}s] {line}", markup=False, highlight=False,
                               soft_wrap=True)
            self._last_line, self._last_print = line, now


def status_table(statuses: dict[str, QueueStatus], workers: list[WorkerStatus]) -> Table:
    """Queue counts, throughput and the managed workers serving each queue."""
    table = Table(title="Queues (live, from the registry)", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("queue", "waiting", "delayed", "active", "completed", "failed", "avg ms", "workers"):
        table.add_column(column, justify="left" if column in ("queue", "workers") else "right")
    by_queue: dict[str, list[WorkerStatus]] = {}
    for worker in workers:
        by_queue.setdefault(worker.queue, []).append(worker)
    for queue, status in statuses.items():
        c = status.counts
        pools = ", ".join(
            f"pid {w.pid} {w.state.value}" + (f" autoscale {w.autoscale[1]}-{w.autoscale[0]}" if w.autoscale else "")
            for w in by_queue.get(queue, [])
        )
        average_ms = status.health.metrics.average_processing_time
        table.add_row(queue, str(c.waiting), str(c.delayed), str(c.active), f"[green]{c.completed}[/]",
                      f"[red]{c.failed}[/]" if c.failed else "0", f"{average_ms:.0f}", pools or "-")
    return table


def plain_line(statuses: dict[str, QueueStatus], expected: dict[str, int]) -> str:
    """One line for logs and pipes: per queue, jobs finished of those expected, and the rest by state."""
    parts = []
    for queue, status in statuses.items():
        counts = status.counts.model_dump()
        finished = counts["completed"] + counts["failed"] + counts["cancelled"]
        rest = ", ".join(f"{counts[state]} {state}" for state in ("failed", "active", "waiting", "delayed")
                         if counts[state])
        parts.append(f"{queue} {finished}/{expected.get(queue, 0)} done" + (f" ({rest})" if rest else ""))
    return " | ".join(parts)
