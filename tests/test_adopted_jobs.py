"""Adopted Celery tasks are jobs: the registry's guarantees for `.delay()` with real workers."""

from __future__ import annotations

import os
import signal
import time
from datetime import datetime, timedelta, timezone

import psutil
import pytest
from celery import Celery, signature

from coordinator import ConfigurationError, InvalidArgumentError, JobQueueCoordinator, JobState, QueueConfig, RateLimit
from tests import adopted_app, async_processors
from tests.support.adopted import ADOPTED_QUEUE
from tests.support.celery_events import CeleryEventLog
from tests.support.env import AMQP_URL, FAST_SWEEPS, REDIS_URL, delete_amqp_queues
from tests.support.waiting import WAIT_S, wait_until

Q = ADOPTED_QUEUE


def _log_of(coord: JobQueueCoordinator, worker_id: str) -> str:
    return (coord.worker_log_dir / f"{worker_id}.log").read_text()


def _final(coord: JobQueueCoordinator, job_id: str, queue: str = Q):
    return wait_until(lambda: (j := coord.get_job(queue, job_id)) is not None and j.state.is_final and j, WAIT_S)


def _events(coord: JobQueueCoordinator, job_id: str, queue: str = Q) -> list[str]:
    return [f["event"] for _, f in coord._redis.xrange(coord.keys.for_queue(queue).events)
            if f.get("job_id") == job_id]


def test_delay_is_a_job_from_waiting_to_completed_and_get_returns_its_value(adopted) -> None:
    result = adopted_app.add.delay(2, 3)
    job = adopted.get_job(Q, result.id)  # the AsyncResult id is the job id
    assert job is not None and job.state is JobState.WAITING and job.name == "legacy.add"
    assert job.data == {"args": [2, 3], "kwargs": {}}
    assert result.state == "PENDING" and not result.ready()
    adopted.register_worker(Q)
    assert result.get(timeout=WAIT_S) == 5 and result.state == "SUCCESS" and result.ready()
    done = adopted.get_job(Q, result.id)
    assert done.state is JobState.COMPLETED and done.result == 5 and done.attempts_made == 1
    assert _events(adopted, result.id) == ["waiting", "active", "completed"]
    key = f"legacy-signals:{result.id}"  # the team's signal receivers still run (postrun after get())
    wait_until(lambda: adopted._redis.llen(key) >= 3)
    assert adopted._redis.lrange(key, 0, -1) == ["task_prerun", "task_success", "task_postrun"]


def test_the_queue_rate_limit_holds_adopted_tasks(adopted, prefix, redis_client) -> None:
    adopted.create_queue(QueueConfig(name="limited", limiter=RateLimit(max=1, duration=60_000)))
    queue = adopted.celery_queue("limited")
    runs = f"{prefix}:test:runs"
    first = adopted_app.slow.apply_async((runs, 0), queue=queue)
    second = adopted_app.slow.apply_async((runs, 0), queue=queue)
    adopted.register_worker("limited", concurrency=1)
    assert first.get(timeout=WAIT_S) == first.id
    time.sleep(1.5)  # several sweeps: the second one stays held within the minute
    assert adopted.get_job("limited", second.id).state is JobState.WAITING and redis_client.llen(runs) == 1


def test_countdown_of_an_hour_is_delayed_and_options_map(adopted) -> None:
    queue = adopted.celery_queue(Q)
    later = adopted_app.add.apply_async((1, 1), countdown=3600, queue=queue)
    job = adopted.get_job(Q, later.id)
    assert job.state is JobState.DELAYED and 3590_000 <= job.options.delay <= 3600_000
    eta = datetime.now(timezone.utc) + timedelta(minutes=5)
    at = adopted_app.add.apply_async((1, 2), eta=eta, queue=queue, priority=0)
    job = adopted.get_job(Q, at.id)
    assert job.state is JobState.DELAYED and job.options.priority == 1  # Celery's 0 (Redis: highest) -> 1
    assert adopted.promote_job(Q, at.id) and adopted.get_job(Q, at.id).state is JobState.WAITING
    fixed = adopted_app.add.apply_async((2, 2), task_id="order-42", queue=queue, priority=9)
    again = adopted_app.add.apply_async((5, 5), task_id="order-42", queue=queue)
    assert fixed.id == again.id == "order-42"
    assert adopted.get_job(Q, "order-42").data == {"args": [2, 2], "kwargs": {}}  # idempotent by id
    assert adopted.get_job(Q, "order-42").options.priority == 10
    assert adopted.update_job_priority(Q, "order-42", 2)
    sent = adopted.app.send_task("legacy.add", (3, 4), queue=queue)
    sig = signature("legacy.add", args=(4, 4), app=adopted.app).apply_async(queue=queue)
    assert adopted.get_job(Q, sent.id).state is JobState.WAITING
    assert adopted.get_job(Q, sig.id).state is JobState.WAITING
    assert adopted.get_queue_status(Q).counts.delayed == 1


def test_a_task_cancelled_before_any_worker_exists_never_runs(adopted, prefix, redis_client) -> None:
    runs = f"{prefix}:test:runs"
    doomed = adopted_app.slow.apply_async((runs, 0), queue=adopted.celery_queue(Q))
    kept = adopted_app.slow.apply_async((runs, 0), queue=adopted.celery_queue(Q))
    assert adopted.cancel_job(Q, doomed.id)
    adopted.register_worker(Q, concurrency=1)
    assert kept.get(timeout=WAIT_S) == kept.id  # sent after the cancelled one, on the same queue
    assert adopted.get_job(Q, doomed.id).state is JobState.CANCELLED
    assert [run.split("|")[0] for run in redis_client.lrange(runs, 0, -1)] == [kept.id]


def test_a_paused_queue_holds_adopted_tasks(adopted, prefix, redis_client) -> None:
    runs = f"{prefix}:test:runs"
    adopted.pause_queue(Q)
    adopted.register_worker(Q)
    held = adopted_app.slow.apply_async((runs, 0), queue=adopted.celery_queue(Q))
    time.sleep(1.5)  # several sweeps of a worker that consumes the queue
    assert adopted.get_job(Q, held.id).state is JobState.WAITING and redis_client.llen(runs) == 0
    adopted.resume_queue(Q)
    assert held.get(timeout=WAIT_S) == held.id
    assert redis_client.llen(runs) == 1


def test_a_long_adopted_task_with_a_short_lock_runs_once_and_completes(adopted, prefix, redis_client) -> None:
    """5 s task, 2 s lock, 1 s stalled sweeps: the sweep must neither fail nor recover it."""
    worker = adopted.register_worker(Q, pool="prefork", concurrency=1)
    runs = f"{prefix}:test:runs"
    result = adopted_app.slow.apply_async((runs, 5), queue=adopted.celery_queue(Q))
    wait_until(lambda: adopted.get_job(Q, result.id).state is JobState.ACTIVE)
    done = _final(adopted, result.id)
    assert done.state is JobState.COMPLETED and done.attempts_made == 1 and done.stalled_count == 0
    assert len(redis_client.lrange(runs, 0, -1)) == 1
    assert "maintenance sweep failed" not in _log_of(adopted, worker.id)


def test_a_worker_killed_mid_task_runs_it_again_once_and_records_it_once(adopted, prefix, redis_client) -> None:
    runs = f"{prefix}:test:runs"
    first = adopted.register_worker(Q, pool="prefork", concurrency=1, max_restarts=0)
    result = adopted_app.slow.apply_async((runs, 3), queue=adopted.celery_queue(Q))
    wait_until(lambda: redis_client.llen(runs) == 1)
    os.killpg(first.pid, signal.SIGKILL)
    wait_until(lambda: not psutil.pid_exists(first.pid) or psutil.Process(first.pid).status() == "zombie")
    adopted.register_worker(Q, pool="prefork", concurrency=1)
    assert result.get(timeout=WAIT_S) == result.id
    done = adopted.get_job(Q, result.id)
    assert done.state is JobState.COMPLETED and done.stalled_count == 1 and done.attempts_made == 2
    assert redis_client.llen(runs) == 2  # ran again once
    assert _events(adopted, result.id).count("completed") == 1


def test_retry_and_autoretry_are_the_jobs_retries(adopted, prefix, redis_client) -> None:
    once, auto = f"{prefix}:test:once", f"{prefix}:test:auto"
    retried = adopted_app.retry_once.apply_async((once,), queue=adopted.celery_queue(Q))
    failing = adopted_app.auto.apply_async((auto,), queue=adopted.celery_queue(Q))
    adopted.register_worker(Q)
    assert retried.get(timeout=WAIT_S) == 1
    done = adopted.get_job(Q, retried.id)
    assert done.state is JobState.COMPLETED and done.attempts_made == 2
    assert "retrying" in _events(adopted, retried.id) and "delayed" in _events(adopted, retried.id)
    assert redis_client.lrange(once, 0, -1) == ["0", "1"]
    with pytest.raises(KeyError):
        failing.get(timeout=WAIT_S)
    failed = adopted.get_job(Q, failing.id)
    assert failed.state is JobState.FAILED and failed.attempts_made == 3 and "KeyError" in failed.failed_reason
    assert redis_client.lrange(auto, 0, -1) == ["0", "1", "2"]  # max_retries=2: three runs


def test_a_failing_adopted_task_fails_the_job_at_once_and_get_raises(adopted) -> None:
    adopted.register_worker(Q)
    bad = adopted_app.explode.apply_async(queue=adopted.celery_queue(Q))
    with pytest.raises(ValueError, match="legacy failure"):
        bad.get(timeout=WAIT_S)
    assert bad.state == "FAILURE"
    job = adopted.get_job(Q, bad.id)
    assert job.state is JobState.FAILED and job.attempts_made == 1 and job.failed_reason == "ValueError: legacy failure"


def test_a_bound_task_reaches_its_job_and_enqueue_job_calls_the_queue_task(adopted) -> None:
    queue = adopted.celery_queue(Q)
    bound = adopted_app.with_job.apply_async(("hi",), {"times": 2}, queue=queue)
    adopted.register_worker(Q)
    assert bound.get(timeout=WAIT_S) == {"said": "hihi", "job": bound.id, "task": bound.id}
    job = adopted.get_job(Q, bound.id)
    assert job.progress == 50 and job.logs == ["saying hi"]
    as_kwargs = adopted.enqueue_job(Q, {"word": "yo"}, name="legacy.with_job")
    as_args = adopted.enqueue_job(Q, ["ab", 3], name="legacy.with_job")
    shared = adopted.enqueue_job(Q, {"args": [6, 7]}, name="legacy.shared_mul")
    assert adopted.wait_for_job(Q, as_kwargs.id, WAIT_S).result["said"] == "yo"
    assert adopted.wait_for_job(Q, as_args.id, WAIT_S).result["said"] == "ababab"
    assert adopted.wait_for_job(Q, shared.id, WAIT_S).result == 42
    assert adopted.app.AsyncResult(as_args.id).get(timeout=WAIT_S)["said"] == "ababab"


def test_task_routes_send_a_task_to_a_coordinator_queue_and_its_default_name_is_that_task(prefix) -> None:
    app = Celery("routed", broker=REDIS_URL, backend=REDIS_URL, set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"])

    @app.task(name="routed.mul")
    def mul(x: int, y: int) -> int:
        return x * y

    with JobQueueCoordinator(REDIS_URL, prefix=prefix, app=app) as coord:
        coord.create_queue("math")
        app.conf.task_routes = {"routed.mul": {"queue": coord.celery_queue("math")}}
        result = mul.delay(6, 7)
        assert coord.get_job("math", result.id).state is JobState.WAITING
        assert coord.enqueue_job("math", [1, 2]).name == "routed.mul"


def test_celery_events_tell_the_truth(adopted) -> None:
    with CeleryEventLog(adopted.app) as log:
        adopted.register_worker(Q)
        bad = adopted_app.explode.apply_async(queue=adopted.celery_queue(Q))
        good = adopted_app.add.apply_async((20, 22), queue=adopted.celery_queue(Q))
        retried = adopted_app.retry_once.apply_async(("unused-key",), queue=adopted.celery_queue(Q))
        assert good.get(timeout=WAIT_S) == 42 and retried.get(timeout=WAIT_S) == 1
        _final(adopted, bad.id)
        wait_until(lambda: any(e["type"] == "task-failed" for e in log.of(f"{bad.id}.1")), WAIT_S)
        wait_until(lambda: any(e["type"] == "task-succeeded" for e in log.of(f"{good.id}.1")), WAIT_S)
        wait_until(lambda: any(e["type"] == "task-succeeded" for e in log.of(f"{retried.id}.2")), WAIT_S)
        time.sleep(0.5)  # any late event of the failed job would have arrived
    failed = {e["type"]: e for e in log.of(f"{bad.id}.1")}
    assert "task-succeeded" not in failed and "legacy failure" in failed["task-failed"]["exception"]
    assert failed["task-received"]["name"] == "legacy.explode"  # the job's name, not the queue task's
    received = {e["type"]: e for e in log.of(f"{good.id}.1")}
    assert received["task-received"]["name"] == "legacy.add"
    assert received["task-received"]["args"] == '{"args":[20,22],"kwargs":{}}'
    assert received["task-succeeded"]["result"] == "42"
    first = {e["type"] for e in log.of(f"{retried.id}.1")}
    assert "task-retried" in first and "task-succeeded" not in first


def test_a_broker_the_workers_cannot_read_is_refused(prefix) -> None:
    other_db = Celery("other", broker=REDIS_URL.rsplit("/", 1)[0] + "/5", set_as_current=False)
    other_db.conf.update(accept_content=["json"])
    with pytest.raises(ConfigurationError, match="broker_url"):
        JobQueueCoordinator(REDIS_URL, prefix=prefix, app=other_db)
    rabbit = Celery("rabbit", broker=AMQP_URL, set_as_current=False)
    with pytest.raises(ConfigurationError, match=r"broker_url.*pass broker_url="):
        JobQueueCoordinator(REDIS_URL, prefix=prefix, app=rabbit)
    eager = Celery("eager", broker=REDIS_URL, set_as_current=False)
    eager.conf.task_always_eager = True
    with pytest.raises(ConfigurationError, match="task_always_eager"):
        JobQueueCoordinator(REDIS_URL, prefix=prefix, app=eager)
    with JobQueueCoordinator(REDIS_URL, prefix=prefix, broker_url=AMQP_URL, app=rabbit) as coord:
        assert coord.adopted is not None  # RabbitMQ given to the coordinator too: accepted


def test_delay_on_rabbitmq_goes_through_the_outbox(prefix) -> None:
    with JobQueueCoordinator(REDIS_URL, prefix=prefix, broker_url=AMQP_URL, app=adopted_app.amqp_app,
                             **FAST_SWEEPS) as coord:
        coord.create_queue(Q)
        try:
            result = adopted_app.amqp_app.tasks["legacy.add"].apply_async((40, 2), queue=coord.celery_queue(Q),
                                                                            priority=9)
            job = coord.get_job(Q, result.id)
            assert job.state is JobState.WAITING and job.options.priority == 1  # AMQP: 9 is Celery's highest
            coord.register_worker(Q)
            assert result.get(timeout=WAIT_S) == 42
            assert coord.get_job(Q, result.id).state is JobState.COMPLETED
        finally:
            delete_amqp_queues(coord, [Q])


def test_expires_is_the_start_deadline(adopted, prefix, redis_client) -> None:
    runs = f"{prefix}:test:runs"
    stale = adopted_app.slow.apply_async((runs, 0), expires=1)
    assert adopted.get_job(Q, stale.id).options.expires is not None
    time.sleep(1.5)  # past its deadline before any worker exists
    fresh = adopted_app.slow.apply_async((runs, 0), expires=300)
    adopted.register_worker(Q, concurrency=1)
    assert fresh.get(timeout=WAIT_S) == fresh.id
    job = _final(adopted, stale.id)
    assert job.state is JobState.CANCELLED and "expired" in (job.failed_reason or "")
    assert [run.split("|")[0] for run in redis_client.lrange(runs, 0, -1)] == [fresh.id]


def test_a_chain_of_adopted_tasks_runs_step_after_step_as_jobs(adopted) -> None:
    """The canvas seam: the chain travels in the first job's data; each step is a job of its own."""
    from celery import chain

    queue = adopted.celery_queue(Q)
    result = chain(adopted_app.add.s(1, 2).set(queue=queue), adopted_app.add.s(10).set(queue=queue)).apply_async()
    first = adopted.get_job(Q, result.parent.id)
    assert first.state is JobState.WAITING and first.data["celery"]["chain"]
    adopted.register_worker(Q)
    assert result.get(timeout=WAIT_S) == 13
    last = adopted.get_job(Q, result.id)
    assert last.state is JobState.COMPLETED and last.data["args"] == [3, 10]
    assert last.data["celery"]["parent_id"] == first.id


def test_an_async_processor_never_serves_adopted_tasks(adopted) -> None:
    """A Celery task is sync code: an async def processor is refused on a queue the app routes
    tasks to, and elsewhere a job naming an adopted task (an explicit ``queue=``) fails for good
    instead of reaching the coroutine."""
    with pytest.raises(InvalidArgumentError, match=r"processor: queue 'legacy' receives the adopted Celery task"):
        adopted.processor(Q)(async_processors.echo)
    assert Q not in adopted.processors
    adopted.create_queue("aq")
    adopted.register_worker("aq", async_processors.echo, concurrency=5)
    plain = adopted.enqueue_job("aq", {"n": 1}, name="resize")
    sent = adopted_app.add.apply_async((1, 2), queue=adopted.celery_queue("aq"))
    assert adopted.wait_for_job("aq", plain.id, WAIT_S).result == {"name": "resize", "data": {"n": 1}}
    failed = adopted.wait_for_job("aq", sent.id, WAIT_S)
    assert failed.state is JobState.FAILED and failed.attempts_made == 1
    assert failed.failed_reason == ("UnrecoverableError: job name 'legacy.add': a task of the adopted Celery app, "
                                    "which the async def processor of queue 'aq' cannot run")
