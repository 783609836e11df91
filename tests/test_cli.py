"""The `coordinator` CLI: every command, as a subprocess where it matters, else with CliRunner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result

from coordinator import JobQueueCoordinator
from coordinator.cli import _command_names, main
from tests.support.env import REDIS_URL
from tests.support.servers import free_port
from tests.support.waiting import wait_until


@pytest.fixture
def env(prefix: str) -> dict[str, str]:
    return {"REDIS_URL": REDIS_URL, "JQC_PREFIX": prefix, "JQC_CLI_PREFIX": prefix, "JQC_APP": ""}


@pytest.fixture
def run(env: dict[str, str]) -> Iterator:
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(main, list(args), env=env, catch_exceptions=False)

    yield invoke


def cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coordinator.cli", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_status_table_and_json(coord: JobQueueCoordinator, run) -> None:
    coord.create_queue("emails")
    coord.enqueue_bulk("emails", [{"data": i} for i in range(3)])
    coord.pause_queue("emails")
    table = run("status")
    assert table.exit_code == 0
    assert "emails" in table.output and "paused" in table.output and "no live workers" in table.output
    data = json.loads(run("status", "--json").output)
    (queue,) = data["queues"]
    assert queue["name"] == "emails" and queue["counts"]["waiting"] == 3 and queue["paused"] is True
    assert data["workers"] == []


def test_health_exit_codes(coord: JobQueueCoordinator, run) -> None:
    healthy_enough = run("health", "--json")
    assert healthy_enough.exit_code == 0
    assert json.loads(healthy_enough.output)["status"] in ("healthy", "degraded")
    coord.create_queue("stuck")
    coord.enqueue_job("stuck", 1)
    unhealthy = run("health")
    assert unhealthy.exit_code == 1
    assert unhealthy.output.startswith("unhealthy") and "no live worker" in unhealthy.output


def test_jobs_list_and_show(coord: JobQueueCoordinator, run) -> None:
    coord.create_queue("jq")
    jobs = coord.enqueue_bulk("jq", [{"data": {"n": i}, "name": f"job{i}"} for i in range(3)])
    coord.cancel_job("jq", jobs[0].id)
    listed = json.loads(run("jobs", "list", "jq", "--json").output)
    assert {j["id"] for j in listed} == {j.id for j in jobs}
    waiting = json.loads(run("jobs", "list", "jq", "--state", "waiting", "--json").output)
    assert {j["id"] for j in waiting} == {jobs[1].id, jobs[2].id}
    oldest = json.loads(run("jobs", "list", "jq", "--state", "waiting", "--json", "--oldest-first").output)
    assert [j["id"] for j in oldest] == [j["id"] for j in reversed(waiting)]
    table = run("jobs", "list", "jq", "--state", "cancelled", "--limit", "1", "--oldest-first")
    assert table.exit_code == 0 and jobs[0].id in table.output and jobs[1].id not in table.output
    shown = json.loads(run("jobs", "show", "jq", jobs[1].id, "--json").output)
    assert shown["data"] == {"n": 1} and shown["trace_id"] == jobs[1].trace_id
    plain = run("jobs", "show", "jq", jobs[0].id)
    assert "cancelled" in plain.output
    missing = run("jobs", "show", "jq", "nope")
    assert missing.exit_code == 1 and "not found" in missing.output
    assert run("jobs", "list", "jq", "--state", "bogus").exit_code == 2


def test_retry_cancel_pause_resume(coord: JobQueueCoordinator, run) -> None:
    coord.create_queue("ctl")
    job = coord.enqueue_job("ctl", 1)
    refused = run("retry", "ctl", job.id)
    assert refused.exit_code == 1 and "is waiting" in refused.output
    assert run("cancel", "ctl", job.id).exit_code == 0
    assert coord.get_job("ctl", job.id).state.value == "cancelled"  # type: ignore[union-attr]
    assert run("cancel", "ctl", job.id).exit_code == 1
    assert run("retry", "ctl", job.id).exit_code == 0
    assert coord.get_job("ctl", job.id).state.value == "waiting"  # type: ignore[union-attr]
    assert run("cancel", "ctl", "no-such-job").exit_code == 1
    assert run("pause", "ctl").exit_code == 0 and coord.get_queue("ctl").paused
    assert run("resume", "ctl").exit_code == 0 and not coord.get_queue("ctl").paused
    missing = run("pause", "nowhere")
    assert missing.exit_code == 1 and "does not exist" in missing.output


def test_events_command(coord: JobQueueCoordinator, run) -> None:
    coord.create_queue("evq")
    job = coord.enqueue_job("evq", 1)
    coord.cancel_job("evq", job.id)
    lines = [json.loads(line) for line in run("events", "evq", "--json").output.splitlines()]
    assert [(e["event"], e["job_id"]) for e in lines] == [("waiting", job.id), ("cancelled", job.id)]
    after = run("events", "evq", "--since", lines[0]["id"])
    assert after.output.count("\n") == 1 and "cancelled" in after.output


def test_app_option_and_usage_errors(coord: JobQueueCoordinator, run) -> None:
    coord.create_queue("viaapp")
    found = json.loads(run("--app", "tests.cli_app:make", "status", "--json").output)
    assert [q["name"] for q in found["queues"]] == ["viaapp"]
    assert run("--app", "tests.cli_app:not_a_coordinator", "status").exit_code == 2
    assert run("--app", "tests.no_such_module:x", "status").exit_code == 2
    assert run("--app", "nocolon", "status").exit_code == 2
    assert run("status", "--bogus").exit_code == 2


def test_unreachable_redis_exits_1_without_the_password(env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["status"], env={**env, "REDIS_URL": f"redis://:pw123@127.0.0.1:{free_port()}/0"})
    assert result.exit_code == 1
    assert "cannot reach Redis" in result.output and "pw123" not in result.output


def test_every_command_has_help(run) -> None:
    names = _command_names()
    for expected in ("status", "health", "jobs list", "jobs show", "events", "retry", "cancel", "pause", "resume",
                     "scale", "worker", "beat", "flower", "metrics", "dashboard", "demo"):
        assert expected in names
    for name in names:
        result = run(*name.split(), "--help")
        assert result.exit_code == 0, (name, result.output)
        assert "usage:" in result.output.lower()  # demo passes --help to its own (argparse) parser


def test_worker_command_runs_jobs_in_a_subprocess(coord: JobQueueCoordinator, env: dict[str, str]) -> None:
    coord.create_queue("cliw")
    proc = subprocess.Popen(
        [sys.executable, "-m", "coordinator.cli", "worker", "--queue", "cliw", "--processor", "tests.processors:echo",
         "--pool", "solo"],
        env={**os.environ, **env}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    try:
        job = coord.enqueue_job("cliw", {"hello": "cli"}, trace_id="cli-trace")
        done = coord.wait_for_job("cliw", job.id, timeout=60)
        assert done.result["echo"] == {"hello": "cli"}
        status = cli(env, "status", "--json")
        assert status.returncode == 0
        assert [w["queues"] for w in json.loads(status.stdout)["workers"]] == [["cliw"]]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    job_lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{") and "cli-trace" in line]
    assert {line["message"] for line in job_lines} >= {"job started", "job completed"}


def test_metrics_command_serves_prometheus(coord: JobQueueCoordinator, env: dict[str, str]) -> None:
    coord.create_queue("mq")
    coord.enqueue_job("mq", 1)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "coordinator.cli", "metrics", "--port", str(port)],
                            env={**os.environ, **env}, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    body = ""
    try:
        def scraped() -> bool:
            nonlocal body
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
                    body = reply.read().decode()
                return True
            except OSError:
                return False

        wait_until(scraped, timeout=30, what="metrics endpoint")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    assert proc.returncode == 0
    assert 'jqc_queue_jobs{queue="mq",state="waiting"} 1.0' in body


def test_subprocess_exit_codes(coord: JobQueueCoordinator, env: dict[str, str]) -> None:
    coord.create_queue("sq")
    assert cli(env, "jobs", "show", "sq", "missing").returncode == 1
    assert cli(env, "jobs", "show").returncode == 2
    shown = cli(env, "status", "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["queues"][0]["name"] == "sq"
    health = cli(env, "health", "--json")
    assert health.returncode == 0
    status = json.loads(health.stdout)["status"]
    assert cli(env, "health", "--strict").returncode == (0 if status == "healthy" else 1)
    coord.enqueue_job("sq", 1)
    assert cli(env, "health").returncode == 1  # a waiting job and no worker


def test_scale_command_runs_and_stops_its_workers(coord: JobQueueCoordinator, env: dict[str, str]) -> None:
    coord.create_queue("cls")
    proc = subprocess.Popen(
        [sys.executable, "-m", "coordinator.cli", "scale", "cls", "2", "--processor", "tests.processors:echo"],
        env={**os.environ, **env}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout.readline() == "queue cls: 0 -> 2 workers; Ctrl-C stops them\n"
        assert coord.get_queue_status("cls").workers == 2
        job = coord.enqueue_job("cls", {"via": "scale"})
        assert coord.wait_for_job("cls", job.id, timeout=60).result["echo"] == {"via": "scale"}
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    wait_until(lambda: coord.get_queue_status("cls").workers == 0, 30)


def test_beat_command_fires_a_recurring_job(coord: JobQueueCoordinator, env: dict[str, str]) -> None:
    coord.create_queue("clb")
    coord.schedule_recurring_job("clb", "tick", {"n": 1}, every=1000, key="clb-tick")
    proc = subprocess.Popen([sys.executable, "-m", "coordinator.cli", "beat"], env={**os.environ, **env},
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: coord.get_jobs("clb", ["waiting"]), 30)
        fired = coord.get_jobs("clb", ["waiting"])
        assert fired[0].schedule_key == "clb-tick" and fired[0].id.startswith("rep:clb-tick:")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr


def test_demo_command_runs_the_demo_and_passes_its_exit_code(env: dict[str, str]) -> None:
    helped = cli(env, "demo", "--help")
    assert helped.returncode == 0 and "--quick" in helped.stdout
    ran = cli(env, "demo", "--quick", "--no-recurring", timeout=240)
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    refused = cli({**env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "PATH": "/nonexistent"},
                  "demo", "--quick")
    assert refused.returncode == 3 and "redis-server" in refused.stderr
