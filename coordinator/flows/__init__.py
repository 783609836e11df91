"""Flows (job trees across queues), DAG edges (``depends_on``) and batches, on one engine: a job
waits in ``waiting_children`` until the jobs it depends on have handed it their outcomes.

    FlowJob / FlowNode / BatchStatus   models.py    what callers give and read back
    FlowProducer                        producer.py  add_flow, depends_on, get_flow, cascades
    Batch                               batch.py     batches and their callbacks
    HandOff                             handoff.py   a finished job's outcome to its waiters
    records                             records.py   the shapes of the flow records in Redis
"""

from coordinator.flows.models import BatchStatus, FlowJob, FlowNode

__all__ = ["BatchStatus", "FlowJob", "FlowNode"]
