"""Poison messages pushed straight into a queue's broker list never run, land in the failed list
with their reason, and the worker goes on."""

from __future__ import annotations

import base64
import json
import os
import uuid

from coordinator import JobQueueCoordinator, JobState
from tests import processors
from tests.support.faults import lost_and_duplicated
from tests.support.waiting import WAIT_S, wait_until

# A classic pickle (protocol 0) that runs `touch <file>` when unpickled; written out by hand.
PICKLE_TEMPLATE = "cposix\nsystem\n(S'touch {path}'\ntR."


def kombu_message(celery_queue: str, task: str, body: bytes, content_type: str) -> str:
    task_id = str(uuid.uuid4())
    return json.dumps({
        "body": base64.b64encode(body).decode(), "content-encoding": "binary", "content-type": content_type,
        "headers": {"lang": "py", "task": task, "id": task_id, "root_id": task_id, "parent_id": None,
                    "group": None, "retries": 0, "eta": None, "expires": None, "timelimit": [None, None]},
        "properties": {"correlation_id": task_id, "reply_to": "", "delivery_mode": 2,
                       "delivery_info": {"exchange": "", "routing_key": celery_queue}, "priority": 0,
                       "body_encoding": "base64", "delivery_tag": str(uuid.uuid4())},
    })


def test_poison_messages_are_failed_not_run(coord: JobQueueCoordinator, redis_client, tmp_path, report) -> None:
    coord.create_queue("q")
    worker = coord.register_worker("q", processors.echo, pool="solo")
    celery_queue = coord.celery_queue("q")
    marker = tmp_path / "pickle-ran"
    poison = {
        "not JSON at all": b"\x80\x04this is not json",
        "JSON, not a kombu message": b'{"hello": "world"}',
        "no delivery_tag": json.dumps({"body": "", "properties": {}}).encode(),
        "pickle payload": kombu_message(celery_queue, coord.keys.task_name("q"),
                                        PICKLE_TEMPLATE.format(path=marker).encode(),
                                        "application/x-python-serialize").encode(),
        "wrong content type": kombu_message(celery_queue, coord.keys.task_name("q"), b"a: 1",
                                            "application/x-yaml").encode(),
        "unknown task": kombu_message(celery_queue, "nobody.knows.this",
                                      json.dumps([[], {}, {}]).encode(), "application/json").encode(),
    }
    for raw in poison.values():
        redis_client.lpush(celery_queue, raw)
    good = coord.enqueue_job("q", {"after": "poison"})

    assert coord.wait_for_job("q", good.id, timeout=WAIT_S).state is JobState.COMPLETED
    failed = wait_until(lambda: (jobs := coord.get_failed_jobs("q")) and len(jobs) >= len(poison) and jobs)
    assert len(failed) == len(poison)
    reasons = sorted(job.failed_reason for job in failed)
    assert sum("undecodable message" in r for r in reasons) == 3, reasons
    assert sum("Refusing to deserialize untrusted content" in r for r in reasons) == 2, reasons
    assert any("application/x-python-serialize" in r for r in reasons)
    assert sum("unknown task" in r for r in reasons) == 1, reasons
    assert all(job.state is JobState.FAILED and job.name == "poison-message" for job in failed)
    assert not marker.exists() and not os.path.exists(str(marker))
    assert coord.get_worker(worker.id).state.value == "running"
    snapshot = next(s for s in coord.get_queue_snapshots() if s.name == "q")
    assert snapshot.totals.failed == len(poison)  # jqc_jobs_failed_total agrees with the error rate
    lost, duplicated = lost_and_duplicated(coord, "q", [good.id])
    ran = sum(1 for job in failed if job.attempts_made > 0) + (1 if marker.exists() else 0)
    report.add(f"poison messages ({len(poison)} kinds) pushed into a queue", len(poison) + 1, lost, duplicated,
               note=f"{len(failed)} of {len(poison)} in the failed list, {ran} ran, "
                    f"worker {coord.get_worker(worker.id).state.value} (restarts {coord.get_worker(worker.id).restarts})")
