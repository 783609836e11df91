"""The job registry: the only code that writes job records and state indexes (with `lua/`)."""

from coordinator.registry.registry import NewJob, Registry, StartResult

__all__ = ["NewJob", "Registry", "StartResult"]
