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
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celery.canvas import Signature, _chain, _chord, group
from pydantic import BaseModel, Field

from coordinator.errors import FlowError
from coordinator.flows import records as rec
from coordinator.models import Job

if TYPE_CHECKING:
    from coordinator.flows.producer import FlowProducer
    from coordinator.keys import CoordinatorKeys

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

    def __init__(self, producer: FlowProducer, keys: CoordinatorKeys) -> None:
        self.producer = producer
        self.keys = keys
        self.run = CanvasRun()

    def write(self, canvas: Signature) -> CanvasRun:
        tails = self._write(canvas, [])
        self.run.tails = tails
        return self.run

    def _write(self, sig: Signature, after: list[tuple[Job, str]] | list[Job]) -> list[Job]:
        deps = [item if isinstance(item, tuple) else (item, "fail") for item in after]
        if isinstance(sig, _chord):
            header = self._write(group(sig.tasks), deps)
            return self._write(sig.body, header)
        if isinstance(sig, _chain):
            tails: list[Any] = deps
            for step in sig.tasks:
                tails = self._write(step, tails)
            return tails
        if isinstance(sig, group):
            out: list[Job] = []
            for member in sig.tasks:
                out += self._write(member, deps)
            return out
        return [self._write_one(sig, deps)]

    def _write_one(self, sig: Signature, deps: list[tuple[Job, str]]) -> Job:
        queue = self._queue_of(sig)
        args, kwargs, options = tuple(sig.args or ()), dict(sig.kwargs or {}), dict(sig.options or {})
        if len(args) > 1:
            raise FlowError(f"canvas: {sig.task} has {len(args)} arguments; a processor takes one (its data)")
        data = args[0] if args else (kwargs or None)
        fields: dict[str, Any] = {}
        if options.get("task_id") or options.get("job_id"):
            fields["job_id"] = options.get("job_id") or options["task_id"]
        if options.get("priority") is not None:
            fields["priority"] = options["priority"]
        if options.get("countdown"):
            fields["delay"] = int(float(options["countdown"]) * 1000)
        if deps:
            job = self.producer.enqueue_with_dependencies(
                queue, data, None, None, fields, [(j.queue, j.id, policy) for j, policy in deps],
                policies=(*rec.POLICIES, *rec.INTERNAL_POLICIES))
        else:
            job = self.producer.jobs.enqueue_job(queue, data, None, **fields)
        self.run.jobs.append(job)
        for link in _as_list(options.get("link")):
            self._write(link, [(job, LINK_POLICY)])
        for link in _as_list(options.get("link_error")):
            self._write(link, [(job, LINK_ERROR_POLICY)])
        return job

    def _queue_of(self, sig: Signature) -> str:
        head = f"{self.keys.prefix}."
        name = str(sig.task or "")
        if not name.startswith(head):
            raise FlowError(f"canvas: {name!r} is not a coordinator processor (task names start with {head!r}); "
                            "adopted @app.task tasks are not supported in a canvas yet")
        return name[len(head):]


def _as_list(value: Any) -> list[Signature]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]

