"""Celery's own task events, as Flower receives them, captured in a test."""

from __future__ import annotations

import threading

from celery import Celery

from tests.support.waiting import wait_until


class CeleryEventLog:
    """Celery's own event Receiver on the adopted app, in a thread."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.events: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.app.connection_for_read() as conn:
            receiver = self.app.events.Receiver(conn, handlers={"*": self.events.append})
            while not self._stop.is_set():
                try:
                    receiver.capture(limit=None, timeout=0.5, wakeup=False)
                except TimeoutError:
                    pass

    def __enter__(self) -> CeleryEventLog:
        self._thread.start()
        with self.app.events.default_dispatcher() as dispatcher:
            def ready() -> bool:  # the receiver is subscribed once it hears our own probe
                dispatcher.send("worker-probe")
                return any(e["type"] == "worker-probe" for e in self.events)
            wait_until(ready, 20, 0.2)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def of(self, task_id: str) -> list[dict]:
        return [e for e in list(self.events) if e.get("uuid") == task_id]
