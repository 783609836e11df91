"""The coordinator works under a least-privilege ACL user limited to its prefix and Celery's keys."""

from __future__ import annotations

import pytest

from coordinator import ConfigurationError, JobQueueCoordinator, JobState
from coordinator.acl import acl_rules, acl_setuser_line
from tests import processors
from tests.support.faults import lost_and_duplicated
from tests.support.servers import RedisServer
from tests.support.waiting import WAIT_S, wait_until


def test_everything_works_under_the_documented_acl(report) -> None:
    with RedisServer() as server:
        admin = server.client()
        admin.execute_command("ACL", "SETUSER", "jqc", "on", ">pw", *acl_rules("acl"))
        url = f"redis://jqc:pw@127.0.0.1:{server.port}/0"
        with JobQueueCoordinator(url, prefix="acl", stalled_interval_ms=1000, lock_duration_ms=2000) as coord:
            coord.create_queue("q")
            job = coord.enqueue_job("q", {"x": 1})
            sent = [job.id]
            coord.register_worker("q", processors.sleepy, pool="prefork", concurrency=1)
            assert coord.wait_for_job("q", job.id, timeout=WAIT_S).state is JobState.COMPLETED
            slow = coord.enqueue_job("q", {"seconds": 60})
            sent.append(slow.id)
            wait_until(lambda: coord.get_job("q", slow.id).state is JobState.ACTIVE)
            assert coord.cancel_job("q", slow.id, terminate=True)  # a control broadcast
            coord.pause_queue("q")
            coord.resume_queue("q")
            delayed = coord.schedule_job("q", "later", {"seconds": 0}, delay=200)
            sent.append(delayed.id)
            assert coord.wait_for_job("q", delayed.id, timeout=WAIT_S).state is JobState.COMPLETED
            final = [coord.get_job("q", job_id).state for job_id in sent]
            lost, duplicated = lost_and_duplicated(coord, "q", [job.id, delayed.id])

            with pytest.raises(ConfigurationError, match="acl"):
                JobQueueCoordinator(url, prefix="other").create_queue("q")  # another prefix is out of reach
        denied = [str(entry.get("object")) for entry in admin.acl_log()]
        # Only the other prefix's keys, and CONFIG GET (health then reads persistence from INFO).
        assert denied and all(obj.startswith("other:") or obj == "config|get" for obj in denied), denied
    assert acl_setuser_line("acl").startswith("ACL SETUSER jqc on >PASSWORD resetkeys")
    assert final == [JobState.COMPLETED, JobState.CANCELLED, JobState.COMPLETED]
    kinds = sorted({"other prefix" if obj.startswith("other:") else obj for obj in denied})
    report.add("least-privilege ACL user (prefix keys only)", len(sent), lost, duplicated,
               note=f"{len(denied)} denials, only: {', '.join(kinds)}")


def test_the_security_doc_shows_the_acl_line_the_code_builds() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    assert acl_setuser_line("jqc") in doc
