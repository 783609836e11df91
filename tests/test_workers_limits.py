"""Job timeouts under the prefork pool, and the global rate limit measured from job start times."""

from __future__ import annotations

from coordinator import Backoff, JobQueueCoordinator, JobState, RateLimit
from tests.support.pools import events
from worker_processors import hang, recorded, stubborn


def test_hung_job_is_stopped_at_its_timeout_then_retried_and_failed(coord: JobQueueCoordinator) -> None:
    coord.create_queue("hung")
    coord.register_worker("hung", hang, pool="prefork", concurrency=1)
    job = coord.enqueue_job("hung", {"seconds": 600}, timeout=1, max_retries=1,
                            backoff=Backoff(type="fixed", delay=100))
    final = coord.wait_for_job("hung", job.id, 60)
    assert final.state is JobState.FAILED
    assert final.attempts_made == 2
    assert final.failed_reason == "JobTimeoutError: ran past its timeout of 1 s"  # one meaning in every pool
    assert [e["event"] for e in events(coord, "hung") if e["event"] in ("retrying", "failed")] == ["retrying", "failed"]
    ok = coord.enqueue_job("hung", {"seconds": 0.01})
    assert coord.wait_for_job("hung", ok.id, 30).state is JobState.COMPLETED


def test_job_ignoring_the_soft_limit_is_killed_at_the_hard_limit(coord: JobQueueCoordinator) -> None:
    coord.create_queue("stubborn")
    coord.register_worker("stubborn", stubborn, pool="prefork", concurrency=1)
    job = coord.enqueue_job("stubborn", None, timeout=1, max_retries=0)
    final = coord.wait_for_job("stubborn", job.id, 60)
    # the lock keeper records the timed-out attempt at 1 s (max_retries 0: failed for good), then
    # the pool child that ignores the interruption is killed at Celery's hard limit (timeout + 2 s);
    # its late outcome is fenced off, so the job is not run again by stall recovery
    assert final.state is JobState.FAILED
    assert final.failed_reason == "JobTimeoutError: ran past its timeout of 1 s"
    assert final.attempts_made == 1
    assert events(coord, "stubborn", "stalled") == []


def test_global_rate_limit_holds_across_two_workers(coord: JobQueueCoordinator, prefix: str) -> None:
    limit = RateLimit(max=3, duration=1000)
    coord.create_queue("limited", limiter=limit)
    workers = [coord.register_worker("limited", recorded, pool="threads", concurrency=2) for _ in range(2)]
    jobs = coord.enqueue_bulk("limited", [{"data": {"seconds": 0.02}} for _ in range(15)])

    finals = [coord.wait_for_job("limited", job.id, 60) for job in jobs]
    assert all(job.state is JobState.COMPLETED and job.attempts_made == 1 for job in finals)
    assert not events(coord, "limited", "failed")
    starts = sorted(int(job.processed_on.timestamp() * 1000) for job in finals)
    busiest = max(sum(1 for other in starts if start <= other < start + limit.duration) for start in starts)
    assert busiest <= limit.max  # never more in any window (how close to it depends on the machine's load)
    assert len({job.worker_id for job in finals}) == 2, "both workers took jobs"
    assert {w.node_name for w in workers} == {job.worker_id for job in finals}
