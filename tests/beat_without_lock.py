"""A beat with redbeat's lock turned off (``python -m beat_without_lock``), so tests can run two
that both fire every tick and check that each tick still creates one job."""

from __future__ import annotations

from coordinator import JobQueueCoordinator
from coordinator.beat import run_beat

if __name__ == "__main__":
    coord = JobQueueCoordinator.from_env()
    coord.app.conf.redbeat_lock_key = None
    run_beat(coord, "INFO")
