"""`coordinator flow show` and `coordinator batch show`: a flow's tree and a batch's progress."""

from __future__ import annotations

from typing import Any

import click

from coordinator.errors import JobNotFoundError
from coordinator.flows.models import FlowNode


def _line(node: FlowNode) -> str:
    job = node.job
    edge = f" [{node.on_failure}]" if node.on_failure and node.on_failure != "fail" else ""
    extra = f" - {job.failed_reason}" if job.failed_reason else ""
    return f"{job.queue}:{job.id} {job.name} {job.state.value}{edge}{extra}"


def render_tree(node: FlowNode, limit: int = 50) -> list[str]:
    """The flow as indented lines; past ``limit`` children of one node, a count of the rest by state."""
    lines = [_line(node)]

    def walk(parent: FlowNode, indent: str) -> None:
        shown = parent.children[:limit]
        rest = parent.children[limit:]
        for i, child in enumerate(shown):
            last = i == len(shown) - 1 and not rest
            lines.append(f"{indent}{'└── ' if last else '├── '}{_line(child)}")
            walk(child, indent + ("    " if last else "│   "))
        if rest:
            counts: dict[str, int] = {}
            for child in rest:
                counts[child.job.state.value] = counts.get(child.job.state.value, 0) + 1
            summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
            lines.append(f"{indent}└── ... {len(rest)} more: {summary}")

    walk(node, "")
    return lines


def _ref(ref: str, job_id: str | None) -> tuple[str, str]:
    if job_id is not None:
        return ref, job_id
    queue, sep, rest = ref.partition(":")
    if not sep:
        raise click.UsageError(f"{ref!r}: give QUEUE:JOB_ID, or QUEUE JOB_ID")
    return queue, rest


def register(main: click.Group, pass_state: Any, echo_json: Any) -> None:
    """Add the ``flow`` and ``batch`` command groups to the CLI."""

    @main.group()
    def flow() -> None:
        """Flows: a job's tree of children with their states."""

    @flow.command("show")
    @click.argument("ref")
    @click.argument("job_id", required=False)
    @click.option("--limit", default=50, show_default=True, help="Children shown per node.")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a tree.")
    @pass_state
    def flow_show(state: Any, ref: str, job_id: str | None, limit: int, as_json: bool) -> None:
        """Print the flow below QUEUE:JOB_ID (or QUEUE JOB_ID) with each job's state."""
        queue, job = _ref(ref, job_id)
        tree = state.coord.get_flow(queue, job)
        if tree is None:
            raise JobNotFoundError(queue, job)
        if as_json:
            echo_json(tree)
        else:
            click.echo("\n".join(render_tree(tree, limit)))

    @main.group()
    def batch() -> None:
        """Batches: progress of a group of jobs with callbacks."""

    @batch.command("show")
    @click.argument("batch_id")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @pass_state
    def batch_show(state: Any, batch_id: str, as_json: bool) -> None:
        """Print a batch's counts and failures."""
        status = state.coord.get_batch(batch_id)
        if as_json:
            echo_json(status)
            return
        stage = "done" if status.done else "sealed" if status.sealed else "open"
        click.echo(f"batch {status.id}: {status.total} jobs, {status.pending} pending, {status.succeeded} "
                   f"succeeded, {status.failed} failed, {stage}")
        for ref, reason in sorted(status.failures.items()):
            click.echo(f"  failed {ref}: {reason}")
