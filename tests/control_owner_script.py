"""A script that starts a managed worker and then dies (or idles until killed).

Usage: python -m tests.control_owner_script REDIS_URL PREFIX raise|idle attached|detached
Prints the pids of the worker's process tree as one JSON line first.
"""

from __future__ import annotations

import json
import sys
import time

import psutil

from coordinator import JobQueueCoordinator
from tests import processors


def main() -> None:
    url, prefix, mode, attachment = sys.argv[1:5]
    coord = JobQueueCoordinator(url, prefix=prefix)
    coord.create_queue("q")
    worker = coord.register_worker("q", processors.echo, pool="prefork", concurrency=2,
                                   detached=attachment == "detached")
    tree = [worker.pid, *(child.pid for child in psutil.Process(worker.pid).children(recursive=True))]
    print(json.dumps(tree), flush=True)
    if mode == "raise":
        raise RuntimeError("the script died on an exception")
    while True:
        time.sleep(0.1)


if __name__ == "__main__":
    main()
