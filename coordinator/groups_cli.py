"""`coordinator groups list QUEUE`, `groups pause|resume QUEUE GROUP` and `coordinator limiters`:
what the round-robin holds and what the concurrency caps hold (docs/fairness.md)."""

from __future__ import annotations

from typing import Any

import click


def register(main: click.Group, pass_state: Any, echo_json: Any, console: Any) -> None:
    """Add the ``groups`` command group and the ``limiters`` command to the CLI."""

    @main.group()
    def groups() -> None:
        """Groups of a queue: list, pause, resume."""

    @groups.command("list")
    @click.argument("queue")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
    @pass_state
    def groups_list(state: Any, queue: str, as_json: bool) -> None:
        """The groups of QUEUE with the most waiting jobs (paused ones marked), and its cap."""
        status = state.coord.get_queue_status(queue)
        shown = {"groups": status.groups, "group_count": status.group_count,
                 "grouped_waiting": status.grouped_waiting, "concurrency": status.concurrency,
                 "capped": status.capped}
        if as_json:
            echo_json(shown)
            return
        from rich.table import Table

        table = Table(title=f"groups of {queue}: {status.group_count} with waiting jobs, "
                            f"{status.grouped_waiting} jobs")
        for column in ("group", "waiting", "oldest wait", "active", "state"):
            table.add_column(column, justify="left" if column in ("group", "state") else "right")
        for group in status.groups:
            oldest = "" if group.oldest_waiting_s is None else f"{group.oldest_waiting_s:.1f} s"
            table.add_row(group.name, str(group.waiting), oldest, str(group.active),
                          "paused" if group.paused else "served")
        out = console()
        out.print(table)
        if status.concurrency is not None:
            out.print(f"queue cap: {status.concurrency.active} of {status.concurrency.max_concurrent} active")
        if status.capped:
            out.print(f"{status.capped} jobs parked over a concurrency cap")

    @groups.command("pause")
    @click.argument("queue")
    @click.argument("group")
    @pass_state
    def groups_pause(state: Any, queue: str, group: str) -> None:
        """Release none of GROUP's jobs until resumed."""
        state.coord.pause_group(queue, group)
        click.echo(f"group {group} of {queue} paused")

    @groups.command("resume")
    @click.argument("queue")
    @click.argument("group")
    @pass_state
    def groups_resume(state: Any, queue: str, group: str) -> None:
        """Serve GROUP again."""
        state.coord.resume_group(queue, group)
        click.echo(f"group {group} of {queue} resumed")

    @main.command()
    @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
    @pass_state
    def limiters(state: Any, as_json: bool) -> None:
        """Named limiters with the slots held now."""
        found = state.coord.get_limiters()
        if as_json:
            echo_json(found)
            return
        for limiter in found:
            click.echo(f"{limiter.name}  {limiter.active} of {limiter.max_concurrent} active")
