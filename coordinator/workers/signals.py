"""SIGTERM / SIGINT in a process that runs managed workers: warm close first, kill on a second.

Managed workers run in their own sessions, so a signal to the managing process does not reach
them, and a managing process killed by the default action would leave them running. With the
first worker started, the manager takes SIGTERM and SIGINT if their handlers are still Python's
defaults (a handler the application set is left alone; it can call ``coord.shutdown()`` itself):

- first signal: `WorkerManager.shutdown` - every worker stops taking jobs, its running jobs
  finish (up to the timeout), the process exits with 128 + the signal number;
- second signal while that runs: every worker's process group is SIGKILLed; their unfinished
  jobs go back to waiting through stalled-job recovery (by the next worker to run the queue).
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from coordinator.workers.manager import WorkerManager

log = logging.getLogger(__name__)

HANDLED = (signal.SIGTERM, signal.SIGINT)
#: Warm-close timeout of the first signal.
SIGNAL_SHUTDOWN_TIMEOUT_S = 30.0


class ShutdownSignals:
    """Installs and removes the manager's SIGTERM / SIGINT handlers."""

    def __init__(self, manager: WorkerManager, timeout: float = SIGNAL_SHUTDOWN_TIMEOUT_S) -> None:
        self.manager = manager
        self.timeout = timeout
        self.received = 0
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Take the signals whose handlers are the defaults; only from the main thread."""
        if self._previous or threading.current_thread() is not threading.main_thread():
            return
        defaults = {signal.SIGTERM: signal.SIG_DFL, signal.SIGINT: signal.default_int_handler}
        for signum in HANDLED:
            if signal.getsignal(signum) is defaults[signum]:
                self._previous[signum] = signal.signal(signum, self._handle)

    def uninstall(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, previous in self._previous.items():
            if signal.getsignal(signum) == self._handle:
                signal.signal(signum, previous)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received += 1
        name = signal.Signals(signum).name
        if self.received > 1:
            log.warning("%s again: killing every managed worker now", name)
            self.manager.kill_all()
            raise SystemExit(128 + signum)
        log.warning("%s: closing managed workers (running jobs finish; %s again to stop at once)", name, name)
        self.manager.shutdown(self.timeout)
        raise SystemExit(128 + signum)
