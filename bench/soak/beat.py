"""The soak's own beat: ``python -m bench.soak.beat``, with the soak's settings (a beat started
from the environment alone would cap the event streams at the default length when it enqueues)."""

from bench.soak.tasks import host_coordinator
from coordinator.beat import run_beat

if __name__ == "__main__":
    run_beat(host_coordinator())
