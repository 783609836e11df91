"""Queue-depth auto-scaling: a backlog grows the pool up to the policy's max, then it shrinks."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from coordinator import AutoscalePolicy, JobQueueCoordinator, JobState, QueueCounts, WorkerOptions
from coordinator.workers.autoscaler import wanted_workers
from tests.support.pools import wait_until
from worker_processors import recorded


def test_wanted_workers_follows_depth_within_bounds() -> None:
    policy = AutoscalePolicy(min_workers=1, max_workers=4, jobs_per_worker=5)
    assert wanted_workers(policy, QueueCounts()) == 1
    assert wanted_workers(policy, QueueCounts(waiting=6)) == 2
    assert wanted_workers(policy, QueueCounts(waiting=8, active=2)) == 2
    assert wanted_workers(policy, QueueCounts(waiting=11)) == 3
    assert wanted_workers(policy, QueueCounts(waiting=500)) == 4
    with pytest.raises(ValidationError, match="min_workers"):
        AutoscalePolicy(min_workers=3, max_workers=2)


def test_policy_scales_up_on_a_backlog_and_down_after(coord: JobQueueCoordinator) -> None:
    coord.create_queue("auto")
    policy = AutoscalePolicy(min_workers=1, max_workers=3, jobs_per_worker=2, cooldown_s=0.5, interval_s=0.2,
                             worker_options=WorkerOptions(pool="solo"))
    coord.set_autoscale_policy("auto", policy, processor=recorded)
    assert coord.get_autoscale_policy("auto") == policy
    wait_until(lambda: len(coord.get_workers_by_queue("auto")) == 1, 30, "the min of 1 worker")

    jobs = coord.enqueue_bulk("auto", [{"data": {"seconds": 0.5}} for _ in range(16)])
    sizes = []

    def grown() -> bool:
        sizes.append(len(coord.get_workers_by_queue("auto")))
        return sizes[-1] == 3

    wait_until(grown, 30, "3 workers for the backlog")
    finals = [coord.wait_for_job("auto", job.id, 60) for job in jobs]
    assert all(job.state is JobState.COMPLETED for job in finals)
    assert len({job.worker_id for job in finals}) >= 2
    wait_until(lambda: len(coord.get_workers_by_queue("auto")) == 1, 60, "back to 1 worker")
    assert max(sizes) == 3

    coord.set_autoscale_policy("auto", None)
    assert coord.get_autoscale_policy("auto") is None
