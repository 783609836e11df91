"""Flower on the coordinator's Celery app: ``coordinator flower``.

Flower is started through the app itself (``app.start(["flower", ...])``), so it uses the
coordinator's broker, its per-prefix event exchange and control exchange, and sees the task
events that managed workers send (Flower turns them on with its ``enable_events`` broadcast;
``TASK_EVENTS=1`` starts them with ``-E``). A coordinator job shows there as the
task ``<prefix>.<queue>`` with id ``<job_id>.<token>``.

Flower 2.2 listens on every interface by default and serves its UI without auth; here it binds
to 127.0.0.1 unless told otherwise, and takes basic auth (``user:password[,user2:password2]``)
from the caller or ``FLOWER_BASIC_AUTH``. The credentials go to Flower through that environment
variable, never on a command line where ``ps`` would show them.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from coordinator.errors import InvalidArgumentError

if TYPE_CHECKING:
    from coordinator.facade import JobQueueCoordinator

log = logging.getLogger(__name__)

BASIC_AUTH_ENV = "FLOWER_BASIC_AUTH"
DEFAULT_PORT = 5555
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def flower_argv(address: str = "127.0.0.1", port: int = DEFAULT_PORT, extra: tuple[str, ...] = ()) -> list[str]:
    """The `celery` command line that starts Flower (no secrets in it)."""
    return ["flower", f"--address={address}", f"--port={port}", *extra]


def run_flower(coord: JobQueueCoordinator, address: str = "127.0.0.1", port: int = DEFAULT_PORT,
               basic_auth: str | None = None, extra: tuple[str, ...] = ()) -> None:
    """Run Flower in the foreground on the coordinator's app until it is stopped."""
    auth = basic_auth or os.environ.get(BASIC_AUTH_ENV)
    if auth:
        if any(":" not in pair for pair in auth.split(",")):
            raise InvalidArgumentError("basic_auth: use user:password (comma-separated for several users)")
        os.environ[BASIC_AUTH_ENV] = auth
    elif address not in LOOPBACK:
        log.warning("Flower on %s without basic auth: anyone who reaches it sees and controls the workers",
                    address)
    coord.app.start(flower_argv(address, port, extra))
