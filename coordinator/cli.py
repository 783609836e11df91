"""The `coordinator` command line: a thin click shell over the library.

The coordinator comes from ``--app module:attr`` (a `JobQueueCoordinator`, or a callable that
returns one), else ``JQC_APP``, else `JobQueueCoordinator.from_env()` (REDIS_URL ...).
Read commands take ``--json``. Exit codes: 0 done, 1 not found / refused / unhealthy / Redis
unreachable, 2 usage (bad arguments, options or ``--app``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import uuid
from typing import Any, NoReturn

import click
from pydantic import BaseModel, ValidationError

from coordinator.clock import now_ms
from coordinator.errors import (
    ConfigurationError,
    CoordinatorError,
    JobNotFoundError,
    QueueNotFoundError,
    RedisUnavailableError,
    WorkerNotFoundError,
)
from coordinator.facade import JobQueueCoordinator
from coordinator.flows.cli import register as register_flow_commands
from coordinator.groups_cli import register as register_group_commands
from coordinator.heartbeats import queue_list
from coordinator.models import HealthStatus, JobState, WorkerOptions
from coordinator.settings import redact_url
from coordinator.workers.spec import WorkerSpec, import_path, load

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
APP_ENV = "JQC_APP"


def load_coordinator(app_path: str | None) -> JobQueueCoordinator:
    """The coordinator named by ``module:attr`` (or JQC_APP), else one from the environment."""
    path = app_path or os.environ.get(APP_ENV)
    if not path:
        return JobQueueCoordinator.from_env()
    if ":" not in path:
        raise click.UsageError(f"--app {path!r}: use module:attribute", ctx=None)
    try:
        target = load(path)
    except (ImportError, AttributeError) as exc:
        raise click.UsageError(f"--app {path!r}: {exc}") from None
    if not isinstance(target, JobQueueCoordinator) and callable(target):
        target = target()
    if not isinstance(target, JobQueueCoordinator):
        raise click.UsageError(f"--app {path!r} is a {type(target).__name__}, not a JobQueueCoordinator")
    return target


class _Group(click.Group):
    """Maps the library's errors to messages and exit codes, for every subcommand."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (QueueNotFoundError, JobNotFoundError, WorkerNotFoundError) as exc:
            _fail(str(exc), EXIT_FAILED)
        except (ConfigurationError, ValidationError) as exc:
            _fail(str(exc), EXIT_USAGE)
        except RedisUnavailableError as exc:
            url = redact_url(ctx.obj.coord.settings.url) if ctx.obj and ctx.obj.loaded else "Redis"
            _fail(f"cannot reach Redis at {url}: {type(exc).__name__}", EXIT_FAILED)
        except CoordinatorError as exc:
            _fail(str(exc), EXIT_FAILED)


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


class _State:
    """The coordinator, loaded on first use (``--help`` never connects)."""

    def __init__(self, app_path: str | None) -> None:
        self.app_path = app_path
        self._coord: JobQueueCoordinator | None = None

    @property
    def loaded(self) -> bool:
        return self._coord is not None

    @property
    def coord(self) -> JobQueueCoordinator:
        if self._coord is None:
            self._coord = load_coordinator(self.app_path)
        return self._coord


pass_state = click.make_pass_decorator(_State)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def _echo_json(value: Any) -> None:
    def plain(item: Any) -> Any:
        if isinstance(item, BaseModel):
            return item.model_dump(mode="json")
        if isinstance(item, list):
            return [plain(x) for x in item]
        if isinstance(item, dict):
            return {k: plain(v) for k, v in item.items()}
        return item

    click.echo(json.dumps(plain(value), indent=2, default=str))


def _console() -> Any:
    from rich.console import Console

    return Console(soft_wrap=False, width=None if sys.stdout.isatty() else 160)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--app", "app_path", metavar="MODULE:ATTR", help=f"The coordinator to use (env {APP_ENV}); "
              "default: JobQueueCoordinator.from_env().")
@click.pass_context
def main(ctx: click.Context, app_path: str | None) -> None:
    """Operate a Job Queue Coordinator: queues, jobs, workers, beat, Flower, metrics."""
    ctx.obj = _State(app_path)


# ----------------------------------------------------------------------------- read commands


def live_workers(coord: JobQueueCoordinator) -> list[dict[str, Any]]:
    """Workers on any host with a fresh heartbeat: node, host, pid, queues, heartbeat age, state,
    active / processed / failed jobs and RSS."""
    now = now_ms()
    return [{
        "node": record["node"], "host": record.get("host"), "pid": int(record.get("pid") or 0),
        "queues": queue_list(record.get("queues")),
        "heartbeat_age_s": round((now - int(record.get("heartbeat") or 0)) / 1000, 1),
        "state": record.get("state"), "active": int(record.get("active") or 0),
        "processed": int(record.get("processed") or 0), "failed": int(record.get("failed") or 0),
        "rss_bytes": int(record["rss"]) if record.get("rss") else None,
    } for record in coord.get_live_workers()]


@main.command()
@json_option
@pass_state
def status(state: _State, as_json: bool) -> None:
    """Queues with their counts, rates and workers, and the live workers."""
    coord = state.coord
    queues = [coord.get_queue_status(name) for name in coord.get_queue_names()]
    workers = live_workers(coord)
    if as_json:
        _echo_json({"queues": queues, "workers": workers})
        return
    from rich.table import Table

    table = Table(title=f"queues ({coord.settings.prefix} at {redact_url(coord.settings.url)})")
    for column in ("queue", "state", "waiting", "active", "delayed", "completed", "failed", "cancelled",
                   "deduplicated", "jobs/min", "errors", "avg ms", "workers", "health"):
        table.add_column(column, justify="left" if column in ("queue", "state", "health") else "right")
    for q in queues:
        c, m = q.counts, q.health.metrics
        table.add_row(q.name, "paused" if q.paused else "running", str(c.waiting), str(c.active), str(c.delayed),
                      str(c.completed), str(c.failed), str(c.cancelled), str(q.deduplicated), f"{m.throughput:g}",
                      f"{m.error_rate:.0%}", f"{m.average_processing_time:.0f}", str(q.workers),
                      q.health.status.value)
    console = _console()
    console.print(table)
    if workers:
        wtable = Table(title="live workers")
        for column in ("node", "host", "pid", "queues", "heartbeat"):
            wtable.add_column(column)
        for w in workers:
            wtable.add_row(w["node"], str(w["host"]), str(w["pid"]), ",".join(w["queues"]),
                           f"{w['heartbeat_age_s']} s ago")
        console.print(wtable)
    else:
        console.print("no live workers")


@main.command()
@json_option
@click.option("--strict", is_flag=True, help="Exit 1 when degraded too (default: only when unhealthy).")
@click.option("--worker", "own_worker", is_flag=True,
              help="Probe of one worker container: exit 1 unless a worker on this host has a fresh heartbeat.")
@click.option("--queue", "-q", "worker_queue", default=None, help="With --worker: the queue that worker consumes.")
@click.option("--beat", "beat_lock", is_flag=True,
              help="Probe of a beat container: exit 1 unless a beat holds the lock.")
@pass_state
def health(state: _State, as_json: bool, strict: bool, own_worker: bool, worker_queue: str | None,
           beat_lock: bool) -> None:
    """Health of Redis, its settings, workers and queues; exit 1 when unhealthy (a probe).

    ``--worker`` and ``--beat`` check one service instead of the whole stack."""
    if own_worker or beat_lock:
        _service_health(state.coord, own_worker, worker_queue, beat_lock)
        return
    result = state.coord.get_health()
    if as_json:
        _echo_json(result)
    else:
        click.echo(result.status.value)
        for check in result.checks:
            click.echo(f"  {check.status.value:9} {check.name}: {check.detail}")
    bad = {HealthStatus.UNHEALTHY} | ({HealthStatus.DEGRADED} if strict else set())
    if result.status in bad:
        sys.exit(EXIT_FAILED)


def _service_health(coord: JobQueueCoordinator, own_worker: bool, queue: str | None, beat_lock: bool) -> None:
    """This host's worker (of ``queue``) has a fresh heartbeat; a beat holds the lock. Exit 1 if not."""
    problems = []
    if own_worker:
        host = socket.gethostname()
        mine = [w for w in live_workers(coord) if w["host"] == host and (queue is None or queue in w["queues"])]
        for w in mine:
            click.echo(f"healthy  worker {w['node']}: heartbeat {w['heartbeat_age_s']} s ago")
        if not mine:
            problems.append(f"no worker{f' of queue {queue!r}' if queue else ''} with a fresh heartbeat on {host}")
    if beat_lock:
        ttl_ms = coord.beat_lock_ttl_ms()
        if ttl_ms > 0:
            click.echo(f"healthy  beat: lock held ({ttl_ms} ms left)")
        else:
            problems.append("no beat holds the lock")
    for problem in problems:
        click.echo(f"unhealthy  {problem}")
    if problems:
        sys.exit(EXIT_FAILED)


@main.group()
def jobs() -> None:
    """List and show jobs."""


@jobs.command("list")
@click.argument("queue")
@click.option("--state", "states", multiple=True, type=click.Choice([s.value for s in JobState]),
              help="Only jobs in this state (repeatable); default: all.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--oldest-first", is_flag=True)
@json_option
@pass_state
def jobs_list(state: _State, queue: str, states: tuple[str, ...], limit: int, oldest_first: bool,
              as_json: bool) -> None:
    """Jobs of QUEUE, newest first."""
    found = state.coord.get_jobs(queue, list(states or [s.value for s in JobState]), 0, limit - 1, asc=oldest_first)
    if as_json:
        _echo_json(found)
        return
    from rich.table import Table

    table = Table(title=f"jobs of {queue}")
    for column in ("id", "name", "state", "attempts", "created", "finished", "reason"):
        table.add_column(column)
    for job in found:
        table.add_row(job.id, job.name, job.state.value, str(job.attempts_made), job.created_at.isoformat(),
                      job.finished_on.isoformat() if job.finished_on else "", job.failed_reason or "")
    _console().print(table)


@jobs.command("show")
@click.argument("queue")
@click.argument("job_id")
@json_option
@pass_state
def jobs_show(state: _State, queue: str, job_id: str, as_json: bool) -> None:
    """One job with its data, result, logs and stack traces; exit 1 if it does not exist."""
    job = state.coord.get_job(queue, job_id)
    if job is None:
        _fail(f"job {job_id!r} not found in queue {queue!r}", EXIT_FAILED)
    if as_json:
        _echo_json(job)
        return
    for name, value in job.model_dump(mode="json").items():
        if value not in (None, [], {}):
            shown = json.dumps(value) if isinstance(value, (dict, list)) else value
            click.echo(f"{name:15} {shown}")


@main.command()
@click.argument("queue")
@click.option("--since", default=None, help="Event id to start after (default: the oldest kept; $: new only).")
@click.option("--follow", "-f", is_flag=True, help="Keep waiting for new events.")
@json_option
@pass_state
def events(state: _State, queue: str, since: str | None, follow: bool, as_json: bool) -> None:
    """Events of QUEUE (one line each)."""
    try:
        for event in state.coord.events(queue, since, follow=follow):
            if as_json:
                click.echo(event.model_dump_json())
            else:
                extras = " ".join(f"{k}={v}" for k, v in event.data.items())
                click.echo(f"{event.id} {event.timestamp.isoformat()} {event.event:9} {event.job_id or ''} {extras}")
    except KeyboardInterrupt:
        pass


# ----------------------------------------------------------------------------- job and queue control


def _done(ok: bool, success: str, refusal: str) -> None:
    if not ok:
        _fail(refusal, EXIT_FAILED)
    click.echo(success)


@main.command()
@click.argument("queue")
@click.argument("job_id")
@pass_state
def retry(state: _State, queue: str, job_id: str) -> None:
    """Run a failed or cancelled job again; exit 1 if not found or not in such a state."""
    _done(state.coord.retry_job(queue, job_id), f"job {job_id} waiting again",
          f"job {job_id} is {_job_state(state, queue, job_id)}: only failed or cancelled jobs can be retried")


@main.command()
@click.argument("queue")
@click.argument("job_id")
@click.option("--terminate", is_flag=True, help="End a prefork process running the job now, without "
              "waiting for it to stop on its own.")
@click.option("--reason", default="cancelled", show_default=True, help="Kept as the job's reason.")
@pass_state
def cancel(state: _State, queue: str, job_id: str, terminate: bool, reason: str) -> None:
    """Cancel a waiting, delayed or active job (a running one is asked to stop; see docs/control.md)."""
    _done(state.coord.cancel_job(queue, job_id, terminate, reason), f"job {job_id} cancelled",
          f"job {job_id} is {_job_state(state, queue, job_id)}: cannot cancel")


def _job_state(state: _State, queue: str, job_id: str) -> str:
    job = state.coord.get_job(queue, job_id)
    return job.state.value if job else "gone"


@main.command()
@click.argument("queue")
@pass_state
def pause(state: _State, queue: str) -> None:
    """Pause QUEUE: no worker starts a new job of it until `resume`."""
    state.coord.pause_queue(queue)
    click.echo(f"queue {queue} paused")


@main.command()
@click.argument("queue")
@pass_state
def resume(state: _State, queue: str) -> None:
    """Resume QUEUE."""
    state.coord.resume_queue(queue)
    click.echo(f"queue {queue} resumed")


# ----------------------------------------------------------------------------- long-running commands


def _processor_path(coord: JobQueueCoordinator, queue: str, processor: str | None) -> str | None:
    if processor:
        if ":" not in processor:
            raise click.UsageError(f"--processor {processor!r}: use module:function")
        return processor
    handler = coord.processors.get(queue)
    return import_path(handler, "processor") if handler else None


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


@main.command()
@click.option("--queue", "-q", required=True, help="The coordinator queue to consume.")
@click.option("--processor", "-p", metavar="MODULE:FUNC", help="The queue's processor (default: the one "
              "registered with @coord.processor in the --app module).")
@click.option("--concurrency", "-c", type=click.IntRange(1, 512), default=None)
@click.option("--pool", "-P", type=click.Choice(["prefork", "threads", "solo"]), default="prefork", show_default=True)
@click.option("--autoscale", metavar="MAX,MIN", default=None, help="Prefork processes between MIN and MAX.")
@click.option("--beat/--no-beat", "embed_beat", default=True, show_default=True,
              help="Also run a beat in the worker (any number is safe); --no-beat when a `coordinator beat` runs.")
@pass_state
def worker(state: _State, queue: str, processor: str | None, concurrency: int | None, pool: str,
           autoscale: str | None, embed_beat: bool) -> None:
    """Run a `celery worker` for one queue in the foreground (JSON logs unless on a terminal)."""
    from coordinator.runtime.worker_main import run_worker
    from coordinator.workers.spec import find_import_path

    coord = state.coord
    coord.get_queue(queue)
    path = _processor_path(coord, queue, processor)
    if path is None and not coord.adopted_app:
        raise click.UsageError(f"--processor is needed: queue {queue!r} has no registered processor")
    try:
        scale = tuple(int(n) for n in autoscale.split(",")) if autoscale else None
    except ValueError:
        raise click.BadParameter(f"{autoscale!r}: use MAX,MIN (two whole numbers)", param_hint="--autoscale") from None
    options = WorkerOptions(concurrency=concurrency, pool=pool, autoscale=scale,
                            embed_beat=embed_beat)
    worker_id = f"{queue}-{uuid.uuid4().hex[:8]}"
    spec = WorkerSpec(
        settings=coord.settings, queue=queue, worker_id=worker_id,
        node_name=f"{coord.settings.prefix}-{worker_id}@{socket.gethostname()}", options=options,
        processor=path, app=find_import_path(coord.app, "app") if coord.adopted_app else None,
    )
    run_worker(spec, coord)


@main.command()
@click.argument("queue")
@click.argument("count", type=click.IntRange(0, 64))
@click.option("--processor", "-p", metavar="MODULE:FUNC", help="The queue's processor (default: the one "
              "registered in the --app module).")
@pass_state
def scale(state: _State, queue: str, count: int, processor: str | None) -> None:
    """Run COUNT managed workers for QUEUE, supervised from here until interrupted."""
    coord = state.coord
    if processor and queue not in coord.processors:
        coord.processor(queue)(load(processor))
    result = coord.scale_workers(queue, count)
    click.echo(f"queue {queue}: {result.previous} -> {result.current} workers; Ctrl-C stops them")
    try:
        _wait_for_signal()
    finally:
        coord.shutdown()


@main.command()
@click.option("--loglevel", "-l", default=None, help="Default: LOG_LEVEL or INFO.")
@pass_state
def beat(state: _State, loglevel: str | None) -> None:
    """Run the scheduler that fires recurring jobs (one tick fires once, however many run)."""
    from coordinator.beat import run_beat

    coord = state.coord
    run_beat(coord, (loglevel or coord.settings.log_level).upper())


@main.command()
@click.option("--address", default="127.0.0.1", show_default=True)
@click.option("--port", default=5555, show_default=True, type=click.IntRange(1, 65535))
@click.option("--basic-auth", envvar="FLOWER_BASIC_AUTH", metavar="USER:PASSWORD",
              help="Require basic auth (env FLOWER_BASIC_AUTH; comma-separate several users).")
@pass_state
def flower(state: _State, address: str, port: int, basic_auth: str | None) -> None:
    """Run Flower on the coordinator's Celery app."""
    from coordinator.flower import run_flower

    run_flower(state.coord, address, port, basic_auth)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Off loopback only with users in JQC_DASHBOARD_USERS.")
@click.option("--port", default=5556, show_default=True, type=click.IntRange(1, 65535))
@click.option("--flower-url", envvar="JQC_DASHBOARD_FLOWER_URL", metavar="URL",
              help="Flower's base URL, for links from a job to its Celery task.")
@click.option("--hash-password", is_flag=True,
              help="Read a password (prompt or stdin) and print its hash for JQC_DASHBOARD_USERS.")
@pass_state
def dashboard(state: _State, host: str, port: int, flower_url: str | None, hash_password: bool) -> None:
    """Serve the web dashboard: queues, jobs, workers, recurring jobs, with actions."""
    if hash_password:
        from coordinator.dashboard.auth import hash_password as make_hash

        password = click.prompt("password", hide_input=True, confirmation_prompt=sys.stdin.isatty())
        click.echo(make_hash(password))
        return
    from coordinator.dashboard.serve import serve
    from coordinator.log_format import configure_logging

    configure_logging(state.coord.settings.log_level)
    try:
        serve(state.coord, host, port, flower_url)
    finally:
        state.coord.shutdown()


@main.command()
@click.option("--address", default="127.0.0.1", show_default=True)
@click.option("--port", default=9808, show_default=True, type=click.IntRange(1, 65535))
@pass_state
def metrics(state: _State, address: str, port: int) -> None:
    """Serve Prometheus metrics of every queue on http://ADDRESS:PORT/metrics."""
    from coordinator.exporter import serve_metrics
    from coordinator.log_format import configure_logging

    configure_logging(state.coord.settings.log_level)
    server, _ = serve_metrics(state.coord, port, address, block=False)
    click.echo(f"serving http://{address}:{port}/metrics")
    try:
        _wait_for_signal()
    finally:
        server.shutdown()  # type: ignore[attr-defined]


@main.command(context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("demo_args", nargs=-1, type=click.UNPROCESSED)
def demo(demo_args: tuple[str, ...]) -> None:
    """Run the photo-processing demo (REDIS_URL, else a throwaway redis-server); `demo --help` lists its options."""
    from coordinator.demo.__main__ import main as demo_main

    sys.exit(demo_main(list(demo_args)))


register_flow_commands(main, pass_state, _echo_json)
register_group_commands(main, pass_state, _echo_json, _console)


def _command_names() -> list[str]:
    """Every command path, for the tests and the docs."""
    names: list[str] = []

    def walk(group: click.Group, head: str) -> None:
        for name, command in group.commands.items():
            path = f"{head} {name}".strip()
            names.append(path)
            if isinstance(command, click.Group):
                walk(command, path)

    walk(main, "")
    return names

if __name__ == "__main__":
    main()
