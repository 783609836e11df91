"""Supervisor: a thread in the managing process that restarts managed workers that died.

A worker whose process exits while it was not being stopped is ``crashed``: the supervisor emits
a ``worker`` event (action ``crashed``), waits a back-off that doubles with each death in a row,
then starts a new process under the same id and node name (action ``restarted``, new pid). After
``WorkerOptions.max_restarts`` deaths in a row it gives up (action ``gave_up``): the worker stays
crashed until it is closed or scaled away. A worker that finished a job, or ran ``STABLE_S``
seconds, has its count of deaths in a row reset. A live process whose heartbeat stopped (hung
main loop) is killed and restarted the same way, and so is one that beats but makes no progress:
idle for ``STUCK_AFTER_S`` while messages wait in its queue's broker lists (the consumer that
silently stopped consuming after lost connections, seen with Celery on Redis) or in its own
prefetch (a frozen pool). Jobs the dead
worker held come back through stalled-job recovery.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from coordinator.clock import now_ms
from coordinator.heartbeats import HEARTBEAT_TTL_MS
from coordinator.models import WorkerAction, WorkerState
from coordinator.workers import process
from coordinator.workers.loop import BackgroundLoop
from coordinator.workers.managed import ManagedProcess

if TYPE_CHECKING:
    from coordinator.workers.manager import WorkerManager

log = logging.getLogger(__name__)

#: How often the supervisor looks at the processes.
CHECK_INTERVAL_S = 0.25
#: First back-off before a restart; doubles per death in a row, up to `MAX_BACKOFF_S`.
BASE_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
#: A worker that consumed this long is stable again: its deaths in a row are forgotten.
STABLE_S = 60.0
#: A worker idle this long while its queue has messages in the broker, finishing nothing, is stuck.
STUCK_AFTER_S = 60.0
#: A running worker whose last heartbeat is older than this is considered hung.
HEARTBEAT_STALE_MS = HEARTBEAT_TTL_MS + 5_000


def backoff_s(deaths_in_row: int) -> float:
    """Wait before restart number ``deaths_in_row`` (1, 2, ...): 0.5 s, 1 s, 2 s, ... up to 30 s."""
    return min(BASE_BACKOFF_S * 2 ** max(deaths_in_row - 1, 0), MAX_BACKOFF_S)


class Supervisor:
    """Watches the manager's workers from one daemon thread, started with the first worker."""

    def __init__(self, manager: WorkerManager) -> None:
        self.manager = manager
        self.loop = BackgroundLoop("jqc-supervisor", CHECK_INTERVAL_S, self.check_all)
        self.stuck_after_s = STUCK_AFTER_S

    def start(self) -> None:
        self.loop.start()

    def stop(self) -> None:
        self.loop.stop()

    def check_all(self) -> None:
        for managed in self.manager.managed():
            if self.loop.stopping.is_set():
                return
            try:
                self.check(managed)
            except Exception:  # Redis away for a moment: look again next round
                log.warning("supervising worker %s failed", managed.spec.worker_id, exc_info=True)

    def check(self, managed: ManagedProcess) -> None:
        """One look at one worker: notice a death, restart when its back-off is over."""
        if managed.stopping or managed.gave_up:
            return
        if managed.state in (WorkerState.RUNNING, WorkerState.PAUSED):
            heartbeat = self.manager.heartbeat(managed)
            if not managed.alive:
                self._on_death(managed)
            elif self._hung(managed, heartbeat):
                self._kill(managed, "no heartbeat")
            elif self._stuck(managed, heartbeat):
                self._kill(managed, "no progress")
            elif int(heartbeat.get("processed") or 0) or time.monotonic() - managed.running_since > STABLE_S:
                managed.crashes_in_row = 0  # it did work, or ran a while: not a crash loop
        elif managed.state is WorkerState.CRASHED and time.monotonic() >= managed.next_restart_at:
            self._restart(managed)

    def _kill(self, managed: ManagedProcess, reason: str) -> None:
        log.error("worker %s (pid %s): %s, killing it", managed.spec.worker_id, managed.process.pid, reason)
        process.kill_group(managed.process)
        managed.process.wait(10)
        self._on_death(managed, reason=reason)

    def _stuck(self, managed: ManagedProcess, heartbeat: dict[str, str]) -> bool:
        """Alive and beating, but idle for ``stuck_after_s`` while messages wait for it and it
        finished nothing: in its queue's broker lists (a consumer that lost its connection) or
        prefetched by it and never started (a frozen pool holding up to its prefetch limit)."""
        now = time.monotonic()
        processed = int(heartbeat.get("processed") or 0)
        marked_at, marked = managed.progress_mark
        idle = heartbeat.get("state") == "running" and not int(heartbeat.get("active") or 0)
        waiting = int(heartbeat.get("held") or 0) > 0 or self.manager.registry.has_backlog(managed.spec.queue)
        if not idle or processed != marked or not waiting:
            managed.progress_mark = (now, processed)
            return False
        return now - max(marked_at, managed.running_since) > self.stuck_after_s

    @staticmethod
    def _hung(managed: ManagedProcess, heartbeat: dict[str, str]) -> bool:
        """No fresh heartbeat for HEARTBEAT_STALE_MS (a missing hash counts from when it was last seen)."""
        beat = heartbeat.get("heartbeat")
        if beat is not None and now_ms() - int(beat) <= HEARTBEAT_STALE_MS:
            managed.last_beat_seen = time.monotonic()
        return (time.monotonic() - max(managed.last_beat_seen, managed.running_since)) * 1000 > HEARTBEAT_STALE_MS

    def _on_death(self, managed: ManagedProcess, reason: str = "process exited") -> None:
        code = managed.process.poll()
        with self.manager.mutex:
            if managed.stopping:
                return
            managed.state = WorkerState.CRASHED
            managed.crashes_in_row += 1
            managed.exit_codes.append(code if code is not None else -1)
            limit = managed.spec.options.max_restarts
            managed.gave_up = managed.crashes_in_row > limit
            wait = backoff_s(managed.crashes_in_row)
            managed.next_restart_at = time.monotonic() + wait
        spec = managed.spec
        log.error("worker %s (pid %s) died: %s, exit code %s", spec.worker_id, managed.process.pid, reason, code)
        registry = self.manager.registry
        registry.emit_worker_event(spec.queue, WorkerAction.CRASHED, spec.worker_id, pid=managed.process.pid,
                                   exit_code=code, reason=reason, restarts=managed.restarts)
        if managed.gave_up:
            log.error("worker %s died %d times in a row: not restarting it", spec.worker_id, managed.crashes_in_row)
            registry.emit_worker_event(spec.queue, WorkerAction.GAVE_UP, spec.worker_id, restarts=managed.restarts)
        recovered = registry.recover_lost(spec.queue)  # the message its consumer had in flight
        if recovered:
            log.warning("worker %s died with %d message(s) in flight: jobs %s re-dispatched",
                        spec.worker_id, len(recovered), recovered)

    def _restart(self, managed: ManagedProcess) -> None:
        spec = managed.spec
        with self.manager.mutex:
            if managed.stopping or managed.state is not WorkerState.CRASHED:
                return
            managed.process = process.spawn(spec, managed.log_path)
            managed.state = WorkerState.STARTING
            managed.restarts += 1
        if self.manager.wait_consuming(managed):
            log.warning("worker %s restarted (restart %d, pid %s)", spec.worker_id, managed.restarts,
                        managed.process.pid)
            self.manager.registry.emit_worker_event(
                spec.queue, WorkerAction.RESTARTED, spec.worker_id, pid=managed.process.pid, restarts=managed.restarts)
            return
        process.stop(managed.process, timeout=1)
        with self.manager.mutex:
            if managed.stopping:
                return
            managed.state = WorkerState.RUNNING  # so the next check records the failed start as a death
        self._on_death(managed, reason="restart did not consume")
