"""Run the migrated project: a coordinator worker for "emails", then the team's call sites.

    cd examples && python -m adopt_celery.run

The worker is started as the migration guide says, `coordinator worker --queue emails` (JQC_APP
names the app module's coordinator); `celery -A adopt_celery.app worker -Q <celery queue>` works too.
"""

from __future__ import annotations

import os
import subprocess
import sys

from adopt_celery.app import coord
from adopt_celery.checkout import place_order


def main() -> None:
    coord.create_queue("emails")
    env = {**os.environ, "JQC_APP": "adopt_celery.app:coord"}
    worker = subprocess.Popen([sys.executable, "-m", "coordinator.cli", "worker", "--queue", "emails", "-c", "1"],
                              env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        results = place_order(42, "ada@example.com", [9.99, 5.01])
        print("receipt:", results["receipt"].get(timeout=60), flush=True)
        print("invoice:", results["invoice"].get(timeout=60), flush=True)
        print("total:", results["total"].get(timeout=60), flush=True)
        reminder = coord.get_job("emails", results["reminder"].id)
        print("reminder:", reminder.state.value, flush=True)
        invoice = coord.get_job("emails", results["invoice"].id)
        print("invoice attempts:", invoice.attempts_made, flush=True)
        for result in results.values():
            result.forget()
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        coord.delete_queue("emails")
        coord.shutdown()


if __name__ == "__main__":
    main()
