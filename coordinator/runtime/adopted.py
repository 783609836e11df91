"""Adopted Celery tasks are jobs: publishing becomes an enqueue, running goes through the claim.

Publishing. Every Celery publish (``task.delay``, ``apply_async``, ``app.send_task``,
``signature(...).apply_async()``, canvas callbacks) ends in ``app.amqp.send_task_message``, after
routing and option handling (``task_routes``, ``countdown`` turned into ``eta``...). The
coordinator wraps that one function: a message routed to a coordinator queue is not published,
it is enqueued as a job (record, state index and broker message in one script, or the outbox on
RabbitMQ), with the Celery task id as the job id. Anything else is published as before.

Running. The worker receives the coordinator's own message for the job and claims it as any job
(`runtime.task.execute`); `AdoptedRunner` then runs the Celery task named by the job with a
request context like Celery's (``self.request.id`` is the job id, ``self.request.job`` the
`Job`), and after the registry recorded the outcome it does what Celery's tracer does: result
backend, ``on_success`` / ``on_failure`` / ``on_retry``, signals, link callbacks and chains.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from billiard.einfo import ExceptionInfo
from celery import Celery, Task, signals, states
from celery.app.trace import task_has_custom
from celery.exceptions import Retry

from coordinator.clock import now_ms
from coordinator.errors import InvalidArgumentError, UnrecoverableError
from coordinator.keys import CoordinatorKeys
from coordinator.models import Job, JobOptions
from coordinator.registry.codec import to_ms

if TYPE_CHECKING:
    from coordinator.runtime.task import Processor

log = logging.getLogger(__name__)

#: Keys of a job's data that hold a Celery call: positional and keyword arguments, canvas headers.
CALL_KEYS = frozenset({"args", "kwargs", "celery"})
#: Canvas fields of a Celery message kept with the job (the seam for chain / group / chord).
CANVAS_EMBED = ("callbacks", "errbacks", "chain", "chord")
CANVAS_HEADERS = ("group", "group_index", "parent_id", "root_id")

#: The job id of the adopted task running in this thread or task (its own retry message is not sent).
_running: ContextVar[str | None] = ContextVar("jqc_adopted_running", default=None)


def call_arguments(data: Any) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
    """How a job's data becomes the Celery task's arguments: ``{"args": [...], "kwargs": {...}}``
    (what ``.delay`` writes) as is; any other dict as keyword arguments; a list as positional
    arguments; None as no argument; anything else as the one positional argument."""
    if isinstance(data, dict) and data and data.keys() <= CALL_KEYS and ("args" in data or "kwargs" in data):
        return list(data.get("args") or []), dict(data.get("kwargs") or {}), dict(data.get("celery") or {})
    if isinstance(data, dict):
        return [], dict(data), {}
    if isinstance(data, list):
        return list(data), {}, {}
    if data is None:
        return [], {}, {}
    return [data], {}, {}


def flow_arguments(job: Job, canvas: dict[str, Any]) -> list[Any]:
    """A canvas on the flow engine (`coordinator.flows.canvas`): the results of the jobs before
    this one, as Celery passes them: the one result of a chain step, or the list of a chord's
    header results in header order; [] for a job outside such a canvas."""
    mode = canvas.get("flow_args")
    if not mode:
        return []
    values = job.children_values()
    results = [values[ref] for ref in canvas.get("flow_refs") or sorted(values) if ref in values]
    if mode == "list":
        return [results]
    return results[:1]


def job_priority(celery_priority: int | None, amqp: bool) -> int | None:
    """Celery's 0..9 as the coordinator's 1 (highest) .. 10: on Redis 0 is Celery's highest, on
    RabbitMQ 9 is; either way the team's most urgent value becomes 1."""
    if celery_priority is None:
        return None
    level = min(max(int(celery_priority), 0), 9)
    return 10 - level if amqp else level + 1


def _ms_of(moment: str | datetime | None) -> int | None:
    if moment is None:
        return None
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return to_ms(moment)


def job_from_message(headers: dict[str, Any], body: Any, priority: int | None, amqp: bool
                     ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The job data and option fields of a Celery (protocol 2) task message; see docs/adopting.md."""
    args, kwargs, embed = body
    data: dict[str, Any] = {"args": list(args), "kwargs": dict(kwargs)}
    canvas = {name: embed[name] for name in CANVAS_EMBED if (embed or {}).get(name)}
    for name in CANVAS_HEADERS:
        value = headers.get(name)
        if value is not None and not (name == "root_id" and value == headers["id"]):
            canvas[name] = value
    if canvas:
        data["celery"] = canvas
    # an exception fails the task as in Celery; self.retry / autoretry_for decide retries
    fields: dict[str, Any] = {"job_id": headers["id"], "max_retries": 0}
    eta = _ms_of(headers.get("eta"))
    if eta is not None:
        fields["delay"] = max(0, eta - now_ms())
    mapped = job_priority(priority, amqp)
    if mapped is not None:
        fields["priority"] = mapped
    hard, soft = headers.get("timelimit") or (None, None)
    if soft or hard:
        fields["timeout"] = soft or hard
    traceparent = headers.get("traceparent")
    if isinstance(traceparent, str) and traceparent.count("-") == 3:
        fields["trace_id"] = traceparent.split("-")[1]
    expires = _ms_of(headers.get("expires"))
    if expires is not None and "expires" in JobOptions.model_fields:
        fields["expires"] = datetime.fromtimestamp(expires / 1000, tz=timezone.utc)
    return data, fields


class AdoptedTasks:
    """The adopted app's tasks as jobs of the coordinator that adopted it."""

    def __init__(self, app: Celery, keys: CoordinatorKeys, broker_is_amqp: bool, enqueue: Callable[..., Job],
                 register_runner: Callable[[str, Processor], Task], processors: Mapping[str, Processor]) -> None:
        self.app = app
        self.keys = keys
        self._enqueue = enqueue
        """`enqueue_job` of the coordinator."""
        self._register_runner = register_runner
        """Registers the Celery task that runs a queue's jobs with a handler (`register_processor_task`)."""
        self._processors = processors
        self._original: Callable[..., Any] | None = None
        self._queue_tasks: dict[str, list[str]] = {}
        self._scanned_at = -1
        self._amqp = broker_is_amqp

    # ----------------------------------------------------------------------------- publishing

    def install(self) -> None:
        """Route the app's publishes to coordinator queues through the registry."""
        amqp = self.app.amqp
        previous = getattr(self.app, "_jqc_adopted", None)
        if previous is not None:  # adopted again (e.g. the worker rebuilt its coordinator)
            previous.uninstall()
        self._original = amqp.send_task_message
        amqp.send_task_message = self._send_task_message
        self.app._jqc_adopted = self
        signals.celeryd_after_setup.connect(self._worker_setup, weak=False)

    def uninstall(self) -> None:
        """Give the app back its own publishing (at shutdown)."""
        if self._original is not None and getattr(self.app, "_jqc_adopted", None) is self:
            self.app.amqp.send_task_message = self._original
            self.app._jqc_adopted = None
        signals.celeryd_after_setup.disconnect(self._worker_setup)
        self._original = None

    def _send_task_message(self, producer: Any, name: str, message: Any, **options: Any) -> Any:
        assert self._original is not None
        queue = self._target_queue(name, options)
        if queue is None:
            return self._original(producer, name, message, **options)
        headers, properties, body, _ = message
        headers.update(options.get("headers") or {})
        if _running.get() == headers.get("id"):
            return None  # self.retry() of the job running here: the registry holds its retry
        celery_queue = self.keys.for_queue(queue).celery_queue
        signals.before_task_publish.send(
            sender=name, body=body, exchange="", routing_key=celery_queue, declare=[],
            headers=headers, properties=properties, retry_policy={},
        )
        data, fields = job_from_message(headers, body, options.get("priority"), self._amqp)
        self._enqueue(queue, data, name=name, **fields)
        signals.after_task_publish.send(sender=name, body=body, headers=headers, exchange="",
                                        routing_key=celery_queue)
        return None

    def _target_queue(self, name: str, options: dict[str, Any]) -> str | None:
        """The coordinator queue a routed message goes to, or None (published by Celery)."""
        if self._is_own(name):
            return None
        queue = options.get("queue")
        celery_queue = queue if isinstance(queue, str) else getattr(queue, "name", None)
        if celery_queue is None and not options.get("exchange"):
            celery_queue = options.get("routing_key")
        return self.keys.queue_of(celery_queue or "")

    def _is_own(self, name: str) -> bool:
        """The coordinator's tasks (a queue's runner, the recurring task) and Celery's built-ins."""
        keys = self.keys
        return name.startswith(f"{keys.prefix}.") or name == keys.recurring_task or name.startswith("celery.")

    # ----------------------------------------------------------------------------- serving

    def task_for_queue(self, queue: str) -> str | None:
        """The app's task routed to ``queue`` (by ``queue=`` or ``task_routes``), if exactly one is."""
        names = self.tasks_routed_to(queue)
        return names[0] if len(names) == 1 else None

    def tasks_routed_to(self, queue: str) -> list[str]:
        """The app's tasks routed to ``queue`` (by ``queue=`` or ``task_routes``)."""
        if len(self.app.tasks) != self._scanned_at:
            self._queue_tasks.clear()
            self._scanned_at = len(self.app.tasks)
        if queue not in self._queue_tasks:
            celery_queue = self.keys.for_queue(queue).celery_queue
            self._queue_tasks[queue] = [name for name in list(self.app.tasks) if self._routed_to(name) == celery_queue]
        return self._queue_tasks[queue]

    def async_processor(self, queue: str, handler: Callable[[Job], Awaitable[Any]]) -> Callable[[Job], Awaitable[Any]]:
        """``handler``, an ``async def`` processor of ``queue``, guarded: the app's Celery tasks
        are sync code, which an event loop must not run, so a job naming one of them (sent with an
        explicit ``queue=``) fails for good instead of reaching ``handler``. `check_async_queue`
        refuses the processor outright where tasks are routed to the queue."""
        self.check_async_queue(queue)

        @functools.wraps(handler)
        async def guarded(job: Job) -> Any:
            if self.task_named(job.name) is not None:
                raise UnrecoverableError(f"job name {job.name!r}: a task of the adopted Celery app, which the "
                                         f"async def processor of queue {job.queue!r} cannot run")
            return await handler(job)

        return guarded

    def check_async_queue(self, queue: str) -> None:
        """`InvalidArgumentError` when tasks of the adopted app are routed to ``queue``: their jobs
        would reach an ``async def`` processor instead of running as the Celery tasks they are."""
        names = self.tasks_routed_to(queue)
        if names:
            raise InvalidArgumentError(
                f"processor: queue {queue!r} receives the adopted Celery task(s) {', '.join(map(repr, names))}, "
                f"which run as sync code; an async def processor cannot serve them. Give the queue a sync "
                f"processor, or route those tasks to another queue")

    def _routed_to(self, name: str) -> str | None:
        if self._is_own(name):
            return None
        task = self.app.tasks[name]
        options = {"queue": task.queue} if getattr(task, "queue", None) else {}
        try:
            route = self.app.amqp.router.route(options, name, (), {}, task)
        except Exception:  # a router of the team's that needs real arguments: not resolvable here
            return None
        target = route.get("queue")
        return target if isinstance(target, str) else getattr(target, "name", None)

    def serve(self, queue: str, fallback: Callable[[Job], Any] | None = None) -> None:
        """Register the Celery task that runs the jobs of ``queue`` here (adopted tasks, or
        ``fallback``, the queue's processor, for jobs that name no task of the app)."""
        name = self.keys.task_name(queue)
        current = self.app.tasks.get(name)
        if current is not None:
            if fallback is None or getattr(current, "_jqc_fallback", None) is fallback:
                return
            self.app.tasks.unregister(name)  # the queue's processor came after its first use
        task = self._register_runner(queue, AdoptedRunner(self, fallback))
        task._jqc_fallback = fallback

    def _worker_setup(self, sender: Any = None, instance: Any = None, **_: Any) -> None:
        """``celery worker -Q <coordinator queue>`` started by hand: serve the queues it consumes."""
        if instance is None or instance.app is not self.app:
            return
        for celery_queue in list(self.app.amqp.queues.consume_from or {}):
            queue = self.keys.queue_of(celery_queue)
            handler = self._processors.get(queue) if queue is not None else None
            if queue is not None and not inspect.iscoroutinefunction(handler):  # async ones have their task
                self.serve(queue, handler)

    def task_named(self, name: str) -> Task | None:
        """The adopted app's task of that name, or None (a processor job's label)."""
        return None if self._is_own(name) else self.app.tasks.get(name)


class _Run:
    """One run of an adopted task, kept from the call to the recorded outcome."""

    def __init__(self, task: Task, request: Any, args: list[Any], kwargs: dict[str, Any]) -> None:
        self.task = task
        self.request = request
        self.args = args
        self.kwargs = kwargs


class AdoptedRunner:
    """The handler behind a queue that adopted tasks are sent to: runs the Celery task the job
    names, or the queue's processor for a job that names none."""

    def __init__(self, adopted: AdoptedTasks, fallback: Callable[[Job], Any] | None) -> None:
        self.adopted = adopted
        self.fallback = fallback
        self.__name__ = getattr(fallback, "__name__", "adopted")
        self.__doc__ = getattr(fallback, "__doc__", None)
        self._local = threading.local()

    def __call__(self, job: Job) -> Any:
        self._local.run = None
        task = self.adopted.task_named(job.name)
        if task is None:
            if self.fallback is not None:
                return self.fallback(job)
            raise UnrecoverableError(f"job name {job.name!r}: no task of that name in the adopted app "
                                     f"and no processor for queue {job.queue!r}")
        args, kwargs, canvas = call_arguments(job.data)
        args = flow_arguments(job, canvas) + args
        request = self._request(task, job, args, kwargs, canvas)
        task.push_request(**request)
        run = self._local.run = _Run(task, task.request, args, kwargs)
        marker = _running.set(job.id)
        try:
            signals.task_prerun.send(sender=task, task_id=job.id, task=task, args=args, kwargs=kwargs)
            if task.track_started and not task.ignore_result:
                task.backend.store_result(job.id, {"pid": os.getpid(), "hostname": job.worker_id},
                                          states.STARTED, request=run.request)
            call = task if task_has_custom(task, "__call__") else task.run
            return call(*args, **kwargs)
        finally:
            _running.reset(marker)
            task.pop_request()

    def finished(self, job: Job, outcome: str, value: Any) -> None:
        """After the registry recorded the outcome: what Celery's tracer does after a run."""
        run: _Run | None = getattr(self._local, "run", None)
        self._local.run = None
        if run is None:
            return
        run.task.request_stack.push(run.request)
        try:
            _report(self.adopted.app, job, run, outcome, value)
        except Exception:  # the job's outcome stands; a result backend away loses only its copy
            log.exception("adopted task %s[%s]: reporting the %s outcome failed", job.name, job.id, outcome)
        finally:
            run.task.request_stack.pop()

    def _request(self, task: Task, job: Job, args: list[Any], kwargs: dict[str, Any],
                 canvas: dict[str, Any]) -> dict[str, Any]:
        celery_queue = self.adopted.keys.for_queue(job.queue).celery_queue
        return {
            "id": job.id, "args": args, "kwargs": kwargs, "job": job,
            "retries": max(job.attempts_made - 1 - job.stalled_count, 0),
            "is_eager": False, "called_directly": False, "hostname": job.worker_id,
            "delivery_info": {"exchange": "", "routing_key": celery_queue, "redelivered": job.stalled_count > 0},
            "root_id": canvas.get("root_id") or job.id, "parent_id": canvas.get("parent_id"),
            "group": canvas.get("group"), "group_index": canvas.get("group_index"),
            "chord": canvas.get("chord"), "chain": canvas.get("chain"),
            "callbacks": canvas.get("callbacks"), "errbacks": canvas.get("errbacks"),
            "correlation_id": job.id, "reply_to": None, "timelimit": (None, None),
            "ignore_result": task.ignore_result, "origin": job.worker_id,
        }


def _report(app: Celery, job: Job, run: _Run, outcome: str, value: Any) -> None:
    task, request, args, kwargs = run.task, run.request, run.args, run.kwargs
    store = not task.ignore_result
    einfo = None
    if outcome == "completed":
        continue_canvas(app, request, value)
        task.backend.mark_as_done(job.id, value, request=request, store_result=store)
        task.on_success(value, job.id, args, kwargs)
        signals.task_success.send(sender=task, result=value)
        state = states.SUCCESS
    else:
        exc: BaseException = value
        einfo = ExceptionInfo((type(exc), exc, exc.__traceback__))
        if outcome == "retry":
            reason = exc.exc if isinstance(exc, Retry) and exc.exc is not None else exc
            task.backend.mark_as_retry(job.id, reason, einfo.traceback, request=request)
            task.on_retry(reason, job.id, args, kwargs, einfo)
            signals.task_retry.send(sender=task, request=request, reason=exc, einfo=einfo)
            state = states.RETRY
        else:
            task.backend.mark_as_failure(job.id, exc, einfo.traceback, request=request,
                                         store_result=store or task.store_errors_even_if_ignored)
            task.on_failure(exc, job.id, args, kwargs, einfo)
            signals.task_failure.send(sender=task, task_id=job.id, exception=exc, args=args, kwargs=kwargs,
                                      traceback=exc.__traceback__, einfo=einfo)
            state = states.FAILURE
    task.after_return(state, value, job.id, args, kwargs, einfo)
    signals.task_postrun.send(sender=task, task_id=job.id, task=task, args=args, kwargs=kwargs,
                              retval=value, state=state)


def continue_canvas(app: Celery, request: Any, value: Any) -> None:
    """The canvas seam: after an adopted job completed, send its link callbacks and the next step
    of its chain, as Celery's tracer does. Each goes through ``apply_async``, so a step routed to
    a coordinator queue becomes a job (with ``parent_id`` / ``root_id`` in its ``celery`` data)."""
    from celery import signature

    options = {"parent_id": request.id, "root_id": request.root_id or request.id}
    for callback in request.callbacks or []:
        signature(callback, app=app).apply_async((value,), **options)
    chain = request.chain
    if chain:
        signature(chain[-1], app=app).apply_async((value,), chain=chain[:-1], **options)

