"""SIGTERM / SIGINT in a process that runs managed workers: warm close first, kill on a second.

Managed workers run in their own sessions, so a signal to the managing process does not reach
them, and a managing process killed by the default action would leave them running. With the
first worker started, the manager takes SIGTERM and SIGINT if their handlers are still Python's
defaults (a handler the application set is left alone; it can call ``coord.shutdown()`` itself):

- first signal: `WorkerManager.shutdown` - every worker stops taking jobs, its running jobs
  finish (up to the timeout), the process exits with 128 + the signal number;
- second signal while that runs: every worker's process group is SIGKILLed; their unfinished
  jobs go back to waiting through stalled-job recovery (by the next worker to run the queue).

A Python signal handler runs in the main thread between two bytecodes of whatever it was doing,
a second one inside the first: a handler that took a lock the interrupted code holds would wait
for itself (a second SIGTERM arriving while the first one's shutdown was inside ``Event.set``
hung the process). So the handler only queues the signal (`queue.SimpleQueue.put` is safe
there); the ``jqc-signals`` thread does the work, and when it is done signals the main thread
again, whose handler then raises `SystemExit`. Meanwhile the main thread runs on.
"""

from __future__ import annotations

import logging
import queue
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
    """Installs and removes the manager's SIGTERM / SIGINT handlers, and acts on the signals."""

    def __init__(self, manager: WorkerManager, timeout: float = SIGNAL_SHUTDOWN_TIMEOUT_S) -> None:
        self.manager = manager
        self.timeout = timeout
        self.received = 0
        self._previous: dict[int, Any] = {}
        self._signals: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._exit_code: int | None = None
        self._killing = False
        self._mutex = threading.Lock()

    def install(self) -> None:
        """Take the signals whose handlers are the defaults; only from the main thread."""
        if self._previous or threading.current_thread() is not threading.main_thread():
            return
        defaults = {signal.SIGTERM: signal.SIG_DFL, signal.SIGINT: signal.default_int_handler}
        for signum in HANDLED:
            if signal.getsignal(signum) is defaults[signum]:
                self._previous[signum] = signal.signal(signum, self._handle)
        if self._previous and (self._thread is None or not self._thread.is_alive()):
            self._thread = threading.Thread(target=self._serve, name="jqc-signals", daemon=True)
            self._thread.start()

    def uninstall(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, previous in self._previous.items():
            if signal.getsignal(signum) == self._handle:
                signal.signal(signum, previous)
        self._previous.clear()
        if self._thread is not None:
            self._signals.put(None)
            self._thread = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # runs between any two bytecodes of the main thread: no lock, no logging, no waiting
        if self._exit_code is not None:
            raise SystemExit(self._exit_code)
        self._signals.put(signum)

    def _serve(self) -> None:
        while (signum := self._signals.get()) is not None:
            self.received += 1
            name = signal.Signals(signum).name
            if self.received == 1:
                log.warning("%s: closing managed workers (running jobs finish; %s again to stop at once)",
                            name, name)
                threading.Thread(target=self._close, args=(signum,), name="jqc-signal-close", daemon=True).start()
            elif self.received == 2:
                log.warning("%s again: killing every managed worker now", name)
                with self._mutex:
                    self._killing = True
                try:
                    self.manager.kill_all()
                finally:
                    self._exit(signum)

    def _close(self, signum: int) -> None:
        try:
            self.manager.shutdown(self.timeout)
        finally:
            with self._mutex:
                killing = self._killing
            if not killing:  # a second signal's kill exits when it is done
                self._exit(signum)

    def _exit(self, signum: int) -> None:
        """Make the main thread raise SystemExit(128 + signum): its handler does on the next signal."""
        self._exit_code = 128 + signum
        signal.pthread_kill(threading.main_thread().ident or 0, signum)
