"""`coordinator flow show` and `coordinator batch show` against a real flow and batch."""

from __future__ import annotations

import json

from click.testing import CliRunner

from coordinator import FlowJob, JobQueueCoordinator
from coordinator.cli import _command_names, main
from tests.support.env import REDIS_URL
from tests.flow_support import run_queue


def test_flow_show_prints_the_tree_with_states(coord: JobQueueCoordinator, prefix: str) -> None:
    for queue in ("reports", "extract"):
        coord.create_queue(queue)
    node = coord.add_flow(FlowJob(queue="reports", name="monthly", children=[
        FlowJob(queue="extract", name="part", data={"i": 1}),
        FlowJob(queue="extract", name="part", data={"i": 2}, on_failure="ignore",
                children=[FlowJob(queue="extract", name="leaf", data={"i": 3})]),
    ]))
    run_queue(coord, "extract", lambda job: job.data["i"])
    env = {"REDIS_URL": REDIS_URL, "JQC_PREFIX": prefix, "JQC_APP": ""}
    runner = CliRunner()
    result = runner.invoke(main, ["flow", "show", f"reports:{node.job.id}"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"reports:{node.job.id} monthly waiting_children"
    middle, first = node.children[1].job, node.children[0].job
    assert f"extract:{first.id} part completed" in result.output
    assert f"extract:{middle.id} part waiting [ignore]" in result.output  # its leaf completed: released
    assert any(line.startswith(("│   └── ", "    └── ")) and " leaf completed" in line for line in lines)
    as_json = runner.invoke(main, ["flow", "show", "reports", node.job.id, "--json"], env=env)
    assert json.loads(as_json.output)["job"]["state"] == "waiting_children"
    missing = runner.invoke(main, ["flow", "show", "reports:nope"], env=env)
    assert missing.exit_code == 1 and "nope" in missing.output

    with coord.batch() as batch:
        batch.enqueue_job("extract", {"i": 4})
    shown = runner.invoke(main, ["batch", "show", batch.id], env=env)
    assert shown.exit_code == 0 and f"batch {batch.id}: 1 jobs, 1 pending, 0 succeeded, 0 failed, sealed" in shown.output
    assert {"flow show", "batch show"} <= set(_command_names())


def test_waiting_children_is_exported_to_prometheus(coord: JobQueueCoordinator) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from coordinator.exporter import register_collector

    for queue in ("reports", "extract"):
        coord.create_queue(queue)
    coord.add_flow(FlowJob(queue="reports", children=[FlowJob(queue="extract")]))
    registry = CollectorRegistry()
    register_collector(coord, registry)
    text = generate_latest(registry).decode()
    assert 'jqc_queue_jobs{queue="reports",state="waiting_children"} 1.0' in text
    assert 'jqc_queue_jobs{queue="extract",state="waiting"} 1.0' in text
