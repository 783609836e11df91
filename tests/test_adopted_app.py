"""An adopted Celery app: its own tasks sent with plain apply_async to a coordinator queue are
recorded in the registry; an app that allows pickle is refused."""

from __future__ import annotations

import pytest
from celery import Celery

from coordinator import ConfigurationError, JobQueueCoordinator, JobState
from tests import adopted_app
from tests.support.env import REDIS_URL
from tests.support.waiting import WAIT_S, wait_until


def test_plain_apply_async_to_a_coordinator_queue_is_tracked(prefix: str) -> None:
    with JobQueueCoordinator(REDIS_URL, prefix=prefix, app=adopted_app.app) as coord:
        assert coord.app is adopted_app.app
        coord.create_queue("legacy")
        queue = coord.celery_queue("legacy")
        ok = adopted_app.add.apply_async((2, 3), queue=queue)
        bad = adopted_app.explode.apply_async(queue=queue)
        waiting = coord.get_job("legacy", ok.id)
        assert waiting is not None and waiting.state is JobState.WAITING
        assert waiting.name == "legacy.add" and waiting.data == {"args": [2, 3], "kwargs": {}}

        coord.register_worker("legacy")  # no processor: the worker runs the adopted app's tasks
        done = wait_until(lambda: (j := coord.get_job("legacy", ok.id)).state.is_final and j)
        assert done.state is JobState.COMPLETED and done.result == 5 and done.attempts_made == 1
        failed = wait_until(lambda: (j := coord.get_job("legacy", bad.id)).state.is_final and j, WAIT_S)
        assert failed.state is JobState.FAILED and failed.failed_reason == "ValueError: legacy failure"
        assert coord.get_queue_status("legacy").counts.completed == 1


def test_an_app_that_accepts_pickle_is_refused(prefix: str) -> None:
    unsafe = Celery("unsafe", broker=REDIS_URL, set_as_current=False)
    unsafe.conf.accept_content = ["json", "pickle"]
    with pytest.raises(ConfigurationError, match="accept_content"):
        JobQueueCoordinator(REDIS_URL, prefix=prefix, app=unsafe)
