"""Celery's canvas (``chain``, ``group``, ``chord``, ``link``, ``link_error``) run on the flow
engine instead of Celery's: each signature of a coordinator processor becomes a job, and each
"runs after" of the canvas a ``depends_on`` edge, so a chord's body is released by the script
that applies its last header job's hand-off, once, with no ``chord_unlock`` polling.

A signature names a processor by its Celery task name (``coord.signature(queue, data)``, or
``app.signature("<prefix>.<queue>", args=(data,))``, or the processor task's ``.s(data)``); its
first positional argument (else its kwargs) is the job's data. Options read: ``job_id``,
``priority``, ``countdown`` (as ``delay`` ms), ``link``, ``link_error``. The job after another
reads the previous results with ``job.children_values()`` (a chain step: one entry; a chord
body: one per header job) and, after a ``link_error``, the failure with ``job.children_failures()``.

A task of an adopted app routed to a coordinator queue may be in the canvas too: its job is
named after the task, its data is ``{"args": ..., "kwargs": ...}``, and the adopted-task runner
passes the previous results as its first argument, as Celery does (one value after a chain
step, a list after a chord's header).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celery import Celery
from celery.canvas import Signature, _chain, _chord, group
from pydantic import BaseModel, Field

from coordinator.errors import FlowError
from coordinator.flows import records as rec
from coordinator.models import Job

if TYPE_CHECKING:
    from coordinator.flows.producer import FlowProducer
    from coordinator.keys import CoordinatorKeys

#: How an adopted task of a canvas receives the results of the jobs before it (job data
#: ``celery.flow_args``): the one result, or the list of them (a chord's body), in the order of
#: ``celery.flow_refs``, as its first positional argument (`runtime.adopted`).
FLOW_ARGS, FLOW_REFS = "flow_args", "flow_refs"
ONE, LIST = "one", "list"
#: A link runs only after success (else it is cancelled), a link_error only after a failure
#: (else cancelled); see `records.INTERNAL_POLICIES` and lua/flow_settle.lua.
LINK_POLICY = "skip"
LINK_ERROR_POLICY = "on_error"


class CanvasRun(BaseModel):
    """The jobs a canvas became, in the order written, and the ones that end it."""

    jobs: list[Job] = Field(default_factory=list)
    tails: list[Job] = Field(default_factory=list)
    """The last jobs: a chain's last step, a chord's body, a group's members."""


class CanvasWriter:
    """Turns one canvas into jobs with ``depends_on`` edges, roots first."""

    def __init__(self, producer: FlowProducer, keys: CoordinatorKeys, app: Celery | None = None) -> None:
        self.producer = producer
        self.keys = keys
        self.app = app
        """The adopted Celery app, whose tasks routed to coordinator queues may be in the canvas."""
        self.run = CanvasRun()

    def write(self, canvas: Signature) -> CanvasRun:
        self.run.tails = self._write(canvas, [], ONE)
        return self.run

    def _write(self, sig: Signature, after: list[tuple[Job, str]], mode: str) -> list[Job]:
        """Write ``sig`` after the jobs of ``after`` (job, policy); ``mode`` says how an adopted
        task receives their results (one value, or a list, as Celery's chain and chord)."""
        if isinstance(sig, _chord):
            header = self._write(group(sig.tasks), after, mode)
            return self._write(sig.body, [(job, "fail") for job in header], LIST)
        if isinstance(sig, _chain):
            tails, step_mode = after, mode
            for step in sig.tasks:
                jobs = self._write(step, tails, step_mode)
                tails, step_mode = [(job, "fail") for job in jobs], LIST if isinstance(step, group) else ONE
            return [job for job, _ in tails]
        if isinstance(sig, group):
            return [job for member in sig.tasks for job in self._write(member, after, mode)]
        return [self._write_one(sig, after, mode)]

    def _write_one(self, sig: Signature, deps: list[tuple[Job, str]], mode: str) -> Job:
        args, kwargs, options = list(sig.args or ()), dict(sig.kwargs or {}), dict(sig.options or {})
        queue, name, data = self._job_of(sig, args, kwargs, options, deps, mode)
        fields: dict[str, Any] = {}
        if options.get("task_id") or options.get("job_id"):
            fields["job_id"] = options.get("job_id") or options["task_id"]
        if options.get("priority") is not None:
            fields["priority"] = options["priority"]
        if options.get("countdown"):
            fields["delay"] = int(float(options["countdown"]) * 1000)
        if deps:
            job = self.producer.enqueue_with_dependencies(
                queue, data, None, name, fields, [(j.queue, j.id, policy) for j, policy in deps],
                policies=(*rec.POLICIES, *rec.INTERNAL_POLICIES))
        else:
            job = self.producer.jobs.enqueue_job(queue, data, None, name=name, **fields)
        self.run.jobs.append(job)
        for link in _as_list(options.get("link")):
            self._write(link, [(job, LINK_POLICY)], ONE)
        for link in _as_list(options.get("link_error")):
            if name is not None:
                raise FlowError(f"canvas: link_error of adopted task {name!r} is not supported on the flow engine")
            self._write(link, [(job, LINK_ERROR_POLICY)], ONE)
        return job

    def _job_of(self, sig: Signature, args: list[Any], kwargs: dict[str, Any], options: dict[str, Any],
                deps: list[tuple[Job, str]], mode: str) -> tuple[str, str | None, Any]:
        """Queue, job name (None: the processor's) and data of one signature."""
        head = f"{self.keys.prefix}."
        task_name = str(sig.task or "")
        if task_name.startswith(head):
            if len(args) > 1:
                raise FlowError(f"canvas: {task_name} has {len(args)} arguments; a processor takes one (its data)")
            return task_name[len(head):], None, args[0] if args else (kwargs or None)
        queue = self._adopted_queue(task_name, args, kwargs, options)
        data: dict[str, Any] = {"args": args, "kwargs": kwargs}
        if deps:  # the previous results become the first argument, as Celery passes them
            data["celery"] = {FLOW_ARGS: mode, FLOW_REFS: [f"{job.queue}:{job.id}" for job, _ in deps]}
        return queue, task_name, data

    def _adopted_queue(self, name: str, args: list[Any], kwargs: dict[str, Any], options: dict[str, Any]) -> str:
        task = self.app.tasks.get(name) if self.app is not None else None
        if task is None:
            raise FlowError(f"canvas: {name!r} is neither a coordinator processor (task names start with "
                            f"{self.keys.prefix + '.'!r}) nor a task of the adopted app")
        route = self.app.amqp.router.route(  # type: ignore[union-attr]
            {"queue": task.queue} if getattr(task, "queue", None) else dict(options), name, args, kwargs, task)
        target = route.get("queue")
        queue = self.keys.queue_of(target if isinstance(target, str) else getattr(target, "name", "") or "")
        if queue is None:
            raise FlowError(f"canvas: adopted task {name!r} is not routed to a coordinator queue")
        return queue


def _as_list(value: Any) -> list[Signature]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]

