"""The photo-processing demo: `run_demo()`, `python -m coordinator.demo`, `coordinator demo`."""

from coordinator.demo.redis_server import NoRedisError
from coordinator.demo.run import run_demo
from coordinator.demo.summary import DemoSummary, JobOutcome

__all__ = ["DemoSummary", "JobOutcome", "NoRedisError", "run_demo"]
