"""BackgroundLoop: the daemon thread behind the supervisor and the autoscaler."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class BackgroundLoop:
    """Calls ``tick`` every ``interval_s`` on a daemon thread until stopped; can start again.

    An exception in ``tick`` is logged and the loop goes on: the next tick retries.
    """

    def __init__(self, name: str, interval_s: float, tick: Callable[[], None]) -> None:
        self.name = name
        self.interval_s = interval_s
        self.tick = tick
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._mutex = threading.Lock()

    def start(self) -> None:
        with self._mutex:
            if self._thread is not None and self._thread.is_alive():
                return
            self.stopping.clear()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop and wait up to ``timeout`` s for a tick in progress to end."""
        self.stopping.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while not self.stopping.wait(self.interval_s):
            try:
                self.tick()
            except Exception:  # Redis away for a moment: the next tick tries again
                log.warning("%s: tick failed", self.name, exc_info=True)
