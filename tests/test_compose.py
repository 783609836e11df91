"""docker-compose.yml and the Dockerfile, validated without a Docker engine: parsed, and every
`coordinator ...` command (services and health checks) parsed by the real click CLI."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
APP_SERVICES = {name: svc for name, svc in SERVICES.items() if svc.get("build")}
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def coordinator_commands() -> list[tuple[str, list[str]]]:
    """Every `coordinator ...` argv of the compose file: service commands and health checks."""
    found = []
    for name, svc in SERVICES.items():
        for argv in (svc.get("command"), (svc.get("healthcheck") or {}).get("test", [None, None])[1:]):
            if isinstance(argv, list) and argv and argv[0] == "coordinator":
                found.append((name, argv))
    return found


def cli_group() -> click.Group:
    """The real `coordinator` click group (imported per test, so a missing CLI fails each test)."""
    from coordinator.cli import main

    return main


def parse_cli(argv: list[str]) -> click.Context:
    """Parse ``coordinator ARGS`` as the CLI would, without running it; UsageError if it is wrong."""
    group = cli_group()
    args = list(argv[1:])
    group_ctx = group.make_context("coordinator", args, resilient_parsing=False)
    protected = getattr(group_ctx, "_protected_args", None)  # click >= 8.2; protected_args before
    rest = [*(group_ctx.protected_args if protected is None else protected), *group_ctx.args]
    assert rest, f"{argv}: no subcommand"
    name, command, sub_args = group.resolve_command(group_ctx, rest)
    assert command is not None, f"{argv}: {rest[0]!r} is not a coordinator command"
    return command.make_context(name, sub_args, parent=group_ctx)


def test_the_services_of_the_stack() -> None:
    assert {"redis", "beat", "flower", "metrics", "producer"} <= set(SERVICES)
    workers = [svc for svc in APP_SERVICES.values() if svc["command"][:2] == ["coordinator", "worker"]]
    assert workers and any("--autoscale" in svc["command"] for svc in workers)


@pytest.mark.parametrize(("service", "argv"), coordinator_commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_coordinator_command_parses_with_the_real_cli(service: str, argv: list[str]) -> None:
    ctx = parse_cli(argv)
    assert ctx.command.name in cli_group().commands


def test_every_app_service_runs_a_cli_command_or_the_example_api() -> None:
    for name, svc in APP_SERVICES.items():
        argv = svc["command"]
        if argv[0] == "coordinator":
            continue
        assert argv[:3] == ["python", "-m", "photo_app.api"], name
        assert (ROOT / "examples" / "photo_app" / "api.py").is_file()
        assert "PYTHONPATH=/app:/app/examples" in DOCKERFILE and "COPY examples ./examples" in DOCKERFILE


def test_redis_keeps_jobs() -> None:
    redis_svc = SERVICES["redis"]
    command = " ".join(redis_svc["command"])
    assert "--appendonly yes" in command and "--maxmemory-policy noeviction" in command
    assert "--requirepass" in command
    assert any(volume.endswith(":/data") for volume in redis_svc["volumes"])


def test_every_service_has_a_health_check_and_apps_wait_for_redis() -> None:
    for name, svc in SERVICES.items():
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no health check"
    for name, svc in APP_SERVICES.items():
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy", name


def worker_services() -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in SERVICES.items() if svc.get("command", [])[:2] == ["coordinator", "worker"]}


def test_each_worker_checks_its_own_heartbeat_and_beat_its_lock() -> None:
    """No stack-wide probe: one missing worker must not mark every container unhealthy."""
    for name, svc in worker_services().items():
        queue = parse_cli(svc["command"]).params["queue"]
        probe = svc["healthcheck"]["test"][1:]
        params = parse_cli(probe).params
        assert (params["own_worker"], params["worker_queue"]) == (True, queue), name
    beat_probe = SERVICES["beat"]["healthcheck"]["test"][1:]
    assert parse_cli(beat_probe).params["beat_lock"] is True
    for name, argv in coordinator_commands():
        ctx = parse_cli(argv)
        if ctx.command.name == "health":
            assert ctx.params["own_worker"] or ctx.params["beat_lock"], f"{name}: a stack-wide health probe"


def test_workers_leave_recurring_jobs_to_the_beat_service() -> None:
    assert parse_cli(SERVICES["beat"]["command"]).command.name == "beat"
    for name, svc in worker_services().items():
        assert parse_cli(svc["command"]).params["embed_beat"] is False, f"{name} embeds a beat (add --no-beat)"


def test_every_service_has_cpu_and_memory_limits_and_redis_fits_in_its_own() -> None:
    for name, svc in SERVICES.items():
        limits = svc.get("deploy", {}).get("resources", {}).get("limits", {})
        assert float(limits.get("cpus", 0)) > 0 and re.fullmatch(r"\d+[mg]", limits.get("memory", "")), name
    command = " ".join(SERVICES["redis"]["command"])
    maxmemory = re.search(r"--maxmemory (\d+)mb", command)
    limit = SERVICES["redis"]["deploy"]["resources"]["limits"]["memory"]
    limit_mb = int(limit[:-1]) * (1024 if limit.endswith("g") else 1)
    assert maxmemory and int(maxmemory[1]) < limit_mb, "Redis refuses writes (noeviction) before the container is killed"


def test_configuration_comes_from_the_environment_and_is_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    for name, svc in APP_SERVICES.items():
        env = svc["environment"]
        assert env["REDIS_HOST"] == "redis" and env["REDIS_PASSWORD"].startswith("${REDIS_PASSWORD:?"), name
        for variable in env:
            if variable.startswith(("REDIS_", "JQC_", "LOG_", "WORKER_", "MAX_", "FLOWER_")):
                assert f"| `{variable}` |" in readme, f"{variable} is not in the README's configuration table"
    example = dict(line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    required = set(re.findall(r"\$\{([A-Z_]+):\?", (ROOT / "docker-compose.yml").read_text()))
    assert required <= set(example), "every required variable has a line in .env.example"


def test_flower_requires_auth_and_ports_bind_to_loopback() -> None:
    flower = SERVICES["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    assert "--basic-auth" not in flower["command"], "the password belongs in the environment, not in ps"
    for name, svc in SERVICES.items():
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_the_image_installs_the_package_and_runs_unprivileged() -> None:
    assert re.search(r"^RUN pip install \.$", DOCKERFILE, re.M)
    assert re.search(r"^USER (?!root)\w+", DOCKERFILE, re.M)
    assert "COPY coordinator ./coordinator" in DOCKERFILE


@pytest.mark.parametrize("argv", [["coordinator", "no-such-command"], ["coordinator", "worker", "--no-such-flag"],
                                  ["coordinator", "worker"]])
def test_the_check_refuses_what_the_cli_would_refuse(argv: list[str]) -> None:
    with pytest.raises(click.UsageError):
        parse_cli(argv)
