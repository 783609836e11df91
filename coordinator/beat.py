"""A beat of its own: fires the recurring jobs of one prefix, in the foreground, until stopped.

    python -m coordinator.beat [--loglevel INFO]    settings from the environment, as from_env()

Any number of beats (of their own, or embedded in managed workers) may run: one holds the
lock and fires, the others stand by and take over within seconds if it dies. SIGTERM or SIGINT
stops it and releases the lock.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from coordinator.runtime.beat_scheduler import SCHEDULER

if TYPE_CHECKING:
    from coordinator.facade import JobQueueCoordinator


def run_beat(coord: JobQueueCoordinator, loglevel: str = "INFO") -> None:
    """Run Celery beat with the coordinator's redbeat scheduler; blocks until stopped."""
    coord.app.Beat(loglevel=loglevel, scheduler=SCHEDULER).run()


def main(argv: list[str] | None = None) -> None:
    from coordinator.facade import JobQueueCoordinator

    parser = argparse.ArgumentParser(prog="python -m coordinator.beat", description=__doc__.splitlines()[0])
    parser.add_argument("--loglevel", default=None, help="default: LOG_LEVEL, else INFO")
    args = parser.parse_args(argv)
    coord = JobQueueCoordinator.from_env()
    run_beat(coord, args.loglevel or coord.settings.log_level)


if __name__ == "__main__":
    main()
