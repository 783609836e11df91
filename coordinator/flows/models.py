"""The public models of flows and batches: what the caller gives (`FlowJob`) and reads back
(`FlowNode`, `BatchStatus`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from coordinator.flows.records import FailurePolicy
from coordinator.models import Job, JobOptions


class FlowJob(BaseModel):
    """One job of a flow tree: it runs after its ``children`` are done (a leaf runs at once)."""

    model_config = ConfigDict(extra="forbid")

    queue: str
    data: Any = None
    name: str | None = None
    options: JobOptions | None = None
    children: list[FlowJob] = Field(default_factory=list)
    on_failure: FailurePolicy = "fail"
    """What this job's failure does to its parent: fail it (default), ignore (the parent goes on,
    the failure in its ``children_failures()``), remove (the parent goes on and forgets it),
    continue (the parent starts at once, the failure in its ``children_failures()``)."""


class FlowNode(BaseModel):
    """A job of a flow with its children, as written (``add_flow``) or read (``get_flow``)."""

    job: Job
    children: list[FlowNode] = Field(default_factory=list)
    on_failure: str | None = None
    """The policy of this node's edge to its parent (None at the root)."""

    def walk(self) -> list[FlowNode]:
        """This node and every node below it, parents before children."""
        out = [self]
        for child in self.children:
            out += child.walk()
        return out


class BatchStatus(BaseModel):
    """A batch's progress."""

    id: str
    total: int
    """Members added so far."""
    pending: int
    succeeded: int
    failed: int
    sealed: bool
    """The ``with`` block has exited; members added by running members still count."""
    done: bool
    """Every member finished after the batch was sealed: the callbacks were released."""
    failures: dict[str, str] = Field(default_factory=dict)
    """Member ref (``queue:id``) -> reason, of the failed members."""
    on_complete: str | None = None
    on_success: str | None = None
    parent: str | None = None
    created_at: datetime | None = None
