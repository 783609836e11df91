"""``python -m bench.soak --minutes N --seed S``: a randomized fault soak with a history checker.

A mixed workload at a share (``--load``, default 0.8) of the capacity measured at the start (or
``--capacity`` jobs/s) runs against the soak's own `redis-server` while a seeded injector kills
workers, pool children and the beat, kills and pauses Redis connections, restarts Redis (AOF) and
cuts worker hosts' links (network namespaces, as root). Once the system is quiet a checker holds the
history against the registry. The last line reads ``soak: <jobs> jobs, <faults> faults,
<violations> violations``; the exit status is 1 when there is a violation.

``--check HISTORY`` is not offered: the checker needs the registry of the run as well.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.soak.report import render
from bench.soak.run import Options, soak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=2.0, help="length of the faulted workload (default 2)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the workload and the faults (default 1)")
    parser.add_argument("--capacity", type=float, default=None, help="jobs/s to take as capacity (default: measure)")
    parser.add_argument("--load", type=float, default=0.8, help="share of capacity to send (default 0.8)")
    parser.add_argument("--workers", type=int, default=2, help="managed workers on the main queue (default 2)")
    parser.add_argument("--no-netns", action="store_true", help="no worker hosts in namespaces, no link cuts")
    parser.add_argument("--out", type=Path, default=None, help="directory for the history and logs")
    args = parser.parse_args(argv)
    options = Options(minutes=args.minutes, seed=args.seed, capacity=args.capacity, load=args.load,
                      workers=args.workers, netns=not args.no_netns, out=args.out)
    result = soak(options)
    print(render(result, options))
    return 1 if result.verdict.violations else 0


if __name__ == "__main__":
    sys.exit(main())
