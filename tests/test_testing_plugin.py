"""The `coordinator.testing` plugin: its fixtures (this suite runs on them, see conftest.py),
`run_jobs` through the workers' own scripts, and a user's test file run by pytest with nothing
but the plugin (its own throwaway redis-server)."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from coordinator import InvalidArgumentError, JobQueueCoordinator, JobState, QueueNotFoundError
from coordinator.testing import run_jobs
from tests import processors

ROOT = Path(__file__).resolve().parents[1]


def events_of(coord: JobQueueCoordinator, queue: str, job_id: str) -> list[str]:
    return [f["event"] for _, f in coord._redis.xrange(coord.keys.for_queue(queue).events) if f.get("job_id") == job_id]


def test_run_jobs_claims_and_finishes_through_the_scripts_in_priority_order(coord: JobQueueCoordinator) -> None:
    coord.create_queue("q")
    low = coord.enqueue_job("q", {"n": "low"}, priority=9)
    high = coord.enqueue_job("q", {"n": "high"}, priority=1)
    done = run_jobs(coord, "q", processor=processors.echo)
    assert [job.id for job in done] == [high.id, low.id]
    assert all(job.state is JobState.COMPLETED and job.attempts_made == 1 for job in done)
    assert done[0].result["echo"] == {"n": "high"} and done[0].progress == 50 and done[0].logs == ["echo q"]
    assert events_of(coord, "q", high.id) == ["waiting", "active", "progress", "completed"]
    assert coord.get_queue_status("q").counts.completed == 2
    assert run_jobs(coord, "q", processor=processors.echo) == []  # nothing waits any more


def test_run_jobs_retries_at_once_and_fails_for_good(coord: JobQueueCoordinator) -> None:
    coord.create_queue("q")
    flaky = coord.enqueue_job("q", {"failures": 2}, max_retries=3)
    [done] = run_jobs(coord, "q", processor=processors.flaky)
    assert (done.id, done.state, done.attempts_made, done.result) == (flaky.id, JobState.COMPLETED, 3, "recovered")
    doomed = coord.enqueue_job("q", {}, max_retries=1)
    [failed] = run_jobs(coord, "q", processor=processors.always_fails)
    assert (failed.id, failed.state, failed.attempts_made) == (doomed.id, JobState.FAILED, 2)
    assert failed.failed_reason == "RuntimeError: boom"


def test_run_jobs_leaves_delayed_and_held_jobs_and_honours_limit(coord: JobQueueCoordinator) -> None:
    coord.create_queue("q")
    later = coord.schedule_job("q", "later", {}, delay=60_000)
    ids = [coord.enqueue_job("q", {"n": n}).id for n in range(3)]
    assert [job.id for job in run_jobs(coord, "q", limit=2, processor=processors.echo)] == ids[:2]
    coord.pause_queue("q")
    assert run_jobs(coord, "q", processor=processors.echo) == []  # paused: parked, as on a worker
    assert coord.get_job("q", ids[2]).state is JobState.WAITING
    assert coord.get_job("q", later.id).state is JobState.DELAYED


def test_run_jobs_uses_the_registered_processor_and_reports_removed_jobs(coord: JobQueueCoordinator) -> None:
    coord.create_queue("q")
    coord.processor("q")(processors.echo)
    kept = coord.enqueue_job("q", {"n": 1})
    gone = coord.enqueue_job("q", {"n": 2}, remove_on_complete=True)
    done = run_jobs(coord, "q")
    assert [(job.id, job.state) for job in done] == [(kept.id, JobState.COMPLETED), (gone.id, JobState.COMPLETED)]
    assert coord.get_job("q", gone.id) is None


def test_run_jobs_refuses_a_queue_without_processor_or_unknown(coord: JobQueueCoordinator) -> None:
    coord.create_queue("q")
    with pytest.raises(InvalidArgumentError, match="processor"):
        run_jobs(coord, "q")
    with pytest.raises(QueueNotFoundError):
        run_jobs(coord, "nowhere", processor=processors.echo)


def test_coord_worker_is_a_real_managed_worker(coord: JobQueueCoordinator, coord_worker) -> None:
    worker = coord_worker("photos", processors.echo)  # creates the queue
    job = coord.enqueue_job("photos", {"photo": 1})
    done = coord.wait_for_job("photos", job.id, timeout=30)
    assert done.state is JobState.COMPLETED and done.result["pid"] == worker.pid
    assert [w.id for w in coord.get_workers_by_queue("photos")] == [worker.id]


README_TEST = re.search(r"^```python\n(# file: test_\w+\.py\n.*?)^```", (ROOT / "README.md").read_text(), re.S | re.M)


def test_a_users_test_file_runs_with_the_plugin_alone(pytester: pytest.Pytester,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's example test, as a user's project: a conftest naming the plugin, no Redis given."""
    assert README_TEST, "the README shows a user's test (a ```python block starting '# file: test_...')"
    monkeypatch.delenv("COORDINATOR_TEST_REDIS_URL", raising=False)
    pytester.makeconftest('pytest_plugins = ["coordinator.testing"]\n')
    name = README_TEST[1].splitlines()[0].removeprefix("# file: ")
    pytester.path.joinpath(name).write_text(README_TEST[1])
    pytester.makepyfile(test_server_facts='''
        import redis

        def test_the_plugin_started_its_own_server(coordinator_redis_url):
            assert redis.Redis.from_url(coordinator_redis_url).ping()
            print("URL", coordinator_redis_url)
    ''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s", timeout=300)
    result.assert_outcomes(passed=len(re.findall(r"^def test_", README_TEST[1], re.M)) + 1)
    [url] = re.findall(r"URL (redis://127\.0\.0\.1:\d+/0)", result.stdout.str())
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    assert port != 6379
    with pytest.raises(OSError):  # the throwaway server is gone with the session
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
