"""A managed worker stops when the process that started it is gone (unless it is detached).

A script that called `register_worker` and then died (an exception, SIGKILL, an OOM kill) would
otherwise leave its `celery worker` processes running with parent 1, consuming and unsupervised.
The worker's main process checks its parent pid twice a second: once it is no longer the owner
(the worker was re-parented), it starts Celery's warm shutdown (its own SIGTERM: running jobs
finish, nothing new is taken) and, if that has not ended it after `ORPHAN_STOP_TIMEOUT_S`,
SIGKILLs its process group; jobs still running then come back through stalled-job recovery.
A parent-pid check was chosen over PR_SET_PDEATHSIG: that signal fires when the *thread* that
started the worker exits (the supervisor and autoscaler start workers from their own threads),
and it needs a preexec hook that is unsafe in a threaded parent.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

log = logging.getLogger(__name__)

#: How often the worker looks at its parent pid.
OWNER_CHECK_S = 0.5
#: How long the warm shutdown of an orphaned worker may take before its process group is killed.
ORPHAN_STOP_TIMEOUT_S = 30.0


def watch_owner(owner_pid: int, stop_timeout_s: float = ORPHAN_STOP_TIMEOUT_S) -> threading.Thread:
    """Start the daemon thread that stops this worker once ``owner_pid`` is no longer its parent."""
    thread = threading.Thread(target=_watch, args=(owner_pid, stop_timeout_s), name="jqc-owner", daemon=True)
    thread.start()
    return thread


def _watch(owner_pid: int, stop_timeout_s: float) -> None:
    while os.getppid() == owner_pid:
        time.sleep(OWNER_CHECK_S)
    log.warning("the process that started this managed worker (pid %s) is gone: warm shutdown", owner_pid)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(stop_timeout_s)
    log.error("orphaned worker still running %.0f s after its warm shutdown began: killing it", stop_timeout_s)
    os.killpg(os.getpgrp(), signal.SIGKILL)
