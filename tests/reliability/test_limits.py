"""Names that could reach other keys are refused; data, results, progress and logs are capped."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from coordinator import InvalidNameError, JobQueueCoordinator, JobState
from coordinator.validation import MAX_LOG_LINE
from tests import processors
from tests.support.waiting import WAIT_S


@pytest.mark.parametrize("name", ["a}b", "a{b", "x:y", "../up", "sp ace", "", "a" * 101, "q\n", "é"])
def test_queue_names_that_could_reach_other_keys_are_refused(coord: JobQueueCoordinator, name: str,
                                                             redis_client, prefix) -> None:
    with pytest.raises(ValidationError, match="queue name"):
        coord.create_queue(name)
    with pytest.raises(InvalidNameError, match="queue name"):
        coord.celery_queue(name)
    assert list(redis_client.scan_iter(match=f"{prefix}:*")) == []


@pytest.mark.parametrize("job_id", ["a}b", "x y", "../x", "*", "a" * 201])
def test_job_ids_are_limited_to_a_safe_charset(coord: JobQueueCoordinator, job_id: str) -> None:
    coord.create_queue("q")
    with pytest.raises(ValidationError, match="job_id"):
        coord.enqueue_job("q", {}, job_id=job_id)


def test_prefix_is_validated(prefix) -> None:
    from tests.support.env import REDIS_URL

    for bad in ("a:b", "a{b}", "", "a*"):
        with pytest.raises(ValidationError, match="prefix"):
            JobQueueCoordinator(REDIS_URL, prefix=bad)


def test_log_lines_are_truncated_and_oversized_progress_fails_the_attempt(coord: JobQueueCoordinator) -> None:
    coord.create_queue("q")
    job = coord.enqueue_job("q", {}, max_retries=0)
    coord.register_worker("q", processors.oversized, pool="solo")
    done = coord.wait_for_job("q", job.id, timeout=WAIT_S)
    assert done.state is JobState.FAILED and done.failed_reason.startswith("InvalidJobDataError: progress")
    assert [len(line) for line in done.logs] == [MAX_LOG_LINE]
