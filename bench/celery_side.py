"""The raw Celery side of the benchmark: two apps on the dedicated Redis, each with a trivial task.

``defaults_app``: Celery at its defaults (broker and result backend on Redis, prefetch 4, early ack,
no events). ``same_app``: the Celery settings the coordinator runs with (`CELERY_DEFAULTS`: JSON,
acks late, reject on worker lost, prefetch 1, ten priority lists, task events), so the cost of the
settings and the cost of the registry can be told apart. Worker subprocesses import this module
(``celery -A bench.celery_side:defaults_app worker``); the port comes from ``BENCH_REDIS_PORT``.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

from coordinator.celery_config import CELERY_DEFAULTS

PORT_ENV = "BENCH_REDIS_PORT"
#: Databases of the dedicated Redis (broker, result backend); the coordinator uses 0. Results get
#: a database of their own so that DBSIZE counts finished tasks without touching the task.
DATABASES = {"celery-defaults": (1, 3), "celery-same": (2, 4)}


def _url(db: int) -> str:
    return f"redis://127.0.0.1:{os.environ.get(PORT_ENV, '6379')}/{db}"


def make_app(variant: str) -> Celery:
    """A fresh app of one variant (the benchmark makes one per phase, so no state carries over)."""
    broker_db, backend_db = DATABASES[variant]
    conf = dict(CELERY_DEFAULTS) if variant == "celery-same" else {}
    return _app(f"bench-{variant}", broker_db, backend_db, **conf)


def _app(name: str, broker_db: int, backend_db: int, **conf: Any) -> Celery:
    app = Celery(name, broker=_url(broker_db), backend=_url(backend_db), set_as_current=False)
    app.conf.update(conf)

    @app.task(name="bench.noop", shared=False)
    def noop(data: Any) -> None:
        """The trivial job: take the payload, do nothing."""
        return None

    return app


defaults_app = make_app("celery-defaults")
same_app = make_app("celery-same")
