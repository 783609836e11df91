"""The Celery settings the coordinator starts from, and the app it builds (or adopts) with them.

The module-level names are a valid Celery config module (the top-level `celeryconfig.py`
re-exports them); `build_app` adds what depends on the prefix and the URLs.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from celery import Celery

from coordinator.broker.outbox import AMQP_MAX_PRIORITY
from coordinator.connection import tls_options
from coordinator.errors import ConfigurationError
from coordinator.keys import KOMBU_PRIORITY_LEVELS, CoordinatorKeys
from coordinator.runtime.transport import PREFIX_OPTION
from coordinator.sentinel import is_sentinel_url
from coordinator.settings import Settings, redact_url

log = logging.getLogger(__name__)

# JSON only: a pickle message is refused by the worker, never executed.
task_serializer = "json"
result_serializer = "json"
event_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]
# Task events only when something listens: Flower turns them on in running workers (its
# enable_events broadcast, every 5 s); Settings.task_events starts managed workers with them on.
# Publishing them cost the worker's main process about half its time per job.
worker_send_task_events = False
task_send_sent_event = True
# Each process holds up to 4 messages (Celery's default), so it never idles waiting for the next
# one. A new high-priority job overtakes everything still in the broker, not the few prefetched;
# WorkerOptions.prefetch_multiplier=1 gives strict priorities at about half the throughput.
# Prefetched messages are unacked until their job ends: a dead worker's come back (recover_unstarted).
worker_prefetch_multiplier = 4
# A job whose worker dies goes back to the broker (and the registry recovers it if it does not).
task_acks_late = True
task_reject_on_worker_lost = True
broker_connection_retry_on_startup = True
enable_utc = True
timezone = "UTC"
# The Redis transport: ten priority lists (0 the highest), always read in priority order.
broker_transport_options = {
    "priority_steps": list(KOMBU_PRIORITY_LEVELS),
    "queue_order_strategy": "priority",
    "visibility_timeout": 3600,
}

CELERY_DEFAULTS: dict[str, Any] = {
    name: value for name, value in dict(globals()).items()
    if name.islower() and not name.startswith("_") and name not in ("log", "annotations")
    and not callable(value) and not isinstance(value, type(logging))
}

UNSAFE_SERIALIZERS = ("pickle", "yaml", "msgpack", "application/x-python-serialize")


def build_app(settings: Settings, app: Celery | None = None) -> Celery:
    """A new Celery app for the coordinator, or the team's own app with the settings it needs."""
    keys = CoordinatorKeys(settings.prefix)
    transport = dict(broker_transport_options, visibility_timeout=settings.visibility_timeout_s)
    if settings.visibility_timeout_s < 100:
        # kombu sweeps unacked messages about every 100 s; a short timeout wants a sweep to match.
        transport.update(unacked_restore_interval=max(1, settings.visibility_timeout_s // 2),
                         unacked_restore_throttle=1)
    if settings.broker_is_redis:
        transport.update(
            unacked_key=keys.unacked, unacked_index_key=keys.unacked_index,
            unacked_mutex_key=keys.unacked_mutex,
        )
    if settings.broker_is_redis:
        transport[PREFIX_OPTION] = settings.prefix
    else:  # RabbitMQ: the outbox relay waits for publisher confirms
        transport["confirm_publish"] = True
    broker_sentinel = settings.sentinel_target(settings.effective_broker_url)
    if broker_sentinel is not None:
        transport.update(broker_sentinel.transport_options())
    safety = {
        # A poison message is recorded as a failed job, never delivered or silently dropped.
        "worker_consumer": "coordinator.runtime.consumer:Consumer",
        **({"broker_transport": _redis_transport(broker_sentinel is not None)} if settings.broker_is_redis
           # RabbitMQ: every queue declared with x-max-priority, so priorities hold there too.
           else {"task_queue_max_priority": AMQP_MAX_PRIORITY}),
    }
    tls = tls_options(settings)
    if tls:
        # Without these, kombu falls back to CERT_NONE for rediss:// with only a warning.
        if urlsplit(settings.effective_broker_url).scheme == "rediss":
            safety["broker_use_ssl"] = tls
        if urlsplit(settings.url).scheme == "rediss":
            safety["redis_backend_use_ssl"] = tls
    backend_options: dict[str, Any] = {"global_keyprefix": f"{settings.prefix}:"}
    registry_sentinel = settings.sentinel_target(settings.url)
    if registry_sentinel is not None:
        backend_options.update(registry_sentinel.transport_options())
    prefixed = {
        "control_exchange": keys.control_exchange,
        "event_exchange": keys.event_exchange,
        "broker_transport_options": transport,
        "result_backend_transport_options": backend_options,
    }
    if app is None:
        app = Celery(
            f"coordinator-{settings.prefix}", broker=celery_url(settings, settings.effective_broker_url),
            backend=celery_url(settings, settings.url), set_as_current=False,
        )
        module = user_config_module(settings)
        overrides = user_overrides(module) if module is not None else {}
        if module is not None:
            app.config_from_object(module)
        app.conf.update({**CELERY_DEFAULTS, **overrides}, **prefixed, **safety)
        if "broker_transport_options" in overrides:  # the user's extra transport options, ours on top
            app.conf.broker_transport_options = {**overrides["broker_transport_options"], **transport}
        return app
    _refuse_unsafe(app)
    check_adoptable(settings, app)
    merged = dict(app.conf.broker_transport_options or {})
    merged.update(transport)
    # Flower and Celery's event receivers see the jobs of the adopted app's workers
    app.conf.update(broker_transport_options=merged, worker_send_task_events=True, **safety)
    log.info("adopted Celery app %r (broker %s)", app.main, redact_url(str(app.conf.broker_url)))
    return app


def celery_url(settings: Settings, url: str) -> str:
    """The URL as kombu and Celery spell it: a Sentinel URL becomes their ``;``-separated form
    (the master name travels in the transport options)."""
    target = settings.sentinel_target(url)
    return url if target is None else target.kombu_url


def _redis_transport(sentinel: bool) -> str:
    """Our poison-safe kombu Redis transport, in its Sentinel variant when the broker is Sentinel."""
    return "coordinator.runtime.transport:" + ("SentinelTransport" if sentinel else "Transport")


def _refuse_unsafe(app: Celery) -> None:
    """Refuse an adopted app that would accept or send pickle: messages could run code."""
    accepted = set(app.conf.accept_content or []) | set(app.conf.result_accept_content or [])
    sent = {app.conf.task_serializer, app.conf.result_serializer}
    unsafe = sorted(name for name in accepted | sent if name in UNSAFE_SERIALIZERS)
    if unsafe:
        raise ConfigurationError(
            f"accept_content / task_serializer: the Celery app allows {unsafe}; the coordinator "
            "accepts JSON only (set accept_content=['json'], task_serializer='json')"
        )


def check_adoptable(settings: Settings, app: Celery) -> None:
    """Refuse an app whose settings would lose jobs or bypass the registry, naming the setting."""
    conf = app.conf
    if conf.task_always_eager:
        raise ConfigurationError(
            "task_always_eager: the adopted app runs tasks in the caller, so they would never be jobs; "
            "unset it (coordinator.testing.run_jobs runs jobs in a test's own process)"
        )
    if int(conf.task_protocol or 2) != 2:
        raise ConfigurationError("task_protocol: the coordinator reads Celery's message protocol 2 only; unset it")
    app_broker = _broker_identity(str(conf.broker_url or "amqp://guest@localhost//"))
    ours = _broker_identity(settings.effective_broker_url)
    if app_broker != ours:
        hint = ("pass broker_url= to the coordinator (its workers then read RabbitMQ)" if app_broker[0] == "amqp"
                and settings.broker_is_redis else "point both at the same broker and database")
        raise ConfigurationError(
            f"broker_url: the adopted app's broker {redact_url(str(conf.broker_url))} is not the one the "
            f"coordinator's workers read ({redact_url(settings.effective_broker_url)}), so its jobs would "
            f"never reach them; {hint}"
        )


def _broker_identity(url: str) -> tuple[str, str, int | None, str]:
    """What makes two broker URLs the same broker: transport family, host, port, database / vhost."""
    from kombu import Connection

    if is_sentinel_url(url):
        return ("sentinel", url.split(";")[0].rsplit("@", 1)[-1], None, "")
    conn = Connection(url)
    family = {"rediss": "redis", "amqps": "amqp", "pyamqp": "amqp", "librabbitmq": "amqp"}.get(
        conn.transport_cls, conn.transport_cls)
    host = conn.hostname or "localhost"
    host = "127.0.0.1" if host == "localhost" else host
    default_port = {"redis": 6379, "amqp": 5672}.get(family)
    vhost = conn.virtual_host or ""
    if family == "redis":
        vhost = vhost.strip("/") or "0"
    return (family, host, conn.port or default_port, vhost)


#: Settings of a user's celeryconfig that the coordinator owns, and why it refuses to take them.
OWNED_SETTINGS = {
    "broker_url": "set REDIS_URL / BROKER_URL (or url= / broker_url=): the registry's scripts write the messages",
    "result_backend": "set REDIS_URL: results live beside the registry",
    "control_exchange": "named after the prefix, so two coordinators on one broker never share it",
    "event_exchange": "named after the prefix, so two coordinators on one broker never share it",
    "broker_transport": "the coordinator's poison-safe Redis transport reads the queues",
    "worker_consumer": "the coordinator's consumer records undecodable messages as failed jobs",
    "beat_scheduler": "the coordinator's redbeat scheduler fires recurring jobs once per tick",
    "task_always_eager": "eager tasks run in the caller and are never jobs",
    "task_protocol": "the registry writes protocol 2 messages",
}
#: Settings a user may set only to the value the guarantees need.
REQUIRED_VALUES = {
    "task_acks_late": (True, "a job whose worker dies must go back to the broker"),
    "task_reject_on_worker_lost": (True, "a job whose worker dies must go back to the broker"),
}
#: broker_transport_options keys the coordinator sets itself.
OWNED_TRANSPORT_OPTIONS = {
    "priority_steps": "ten strict priority levels",
    "queue_order_strategy": "queues read in priority order",
    "visibility_timeout": "set visibility_timeout_s on the coordinator",
    "unacked_key": "named after the prefix", "unacked_index_key": "named after the prefix",
    "unacked_mutex_key": "named after the prefix", PREFIX_OPTION: "the coordinator's prefix",
}


def user_config_module(settings: Settings) -> Any:
    """The Celery config module to load: ``settings.celery_config`` (CELERY_CONFIG_MODULE), else
    ``celeryconfig`` when it can be imported (Celery's own habit), else None."""
    import importlib

    name = settings.celery_config or "celeryconfig"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if settings.celery_config is None and exc.name == name:
            return None
        raise ConfigurationError(f"celery_config: cannot import Celery config module {name!r}: {exc}") from None


def user_overrides(module: Any) -> dict[str, Any]:
    """The Celery settings of a user's config module, checked: the safe ones are returned, a
    setting that would lose jobs or run untrusted content is refused with the reason."""
    from celery.app.defaults import DEFAULTS

    values = {name: getattr(module, name) for name in dir(module) if name in DEFAULTS}
    for name, value in values.items():
        if name in OWNED_SETTINGS:
            raise ConfigurationError(
                f"{name} in {module.__name__}: not taken from a config module; {OWNED_SETTINGS[name]}")
        if name in REQUIRED_VALUES and value != REQUIRED_VALUES[name][0]:
            needed, why = REQUIRED_VALUES[name]
            raise ConfigurationError(f"{name} in {module.__name__}: must be {needed!r}, {why}")
    unsafe = _unsafe_serializers(values)
    if unsafe:
        raise ConfigurationError(f"{unsafe[0]} in {module.__name__}: JSON only, a pickle (or yaml, msgpack) "
                                 "message could run code")
    transport = values.get("broker_transport_options") or {}
    for key in transport:
        if key in OWNED_TRANSPORT_OPTIONS and transport[key] != broker_transport_options.get(key):
            raise ConfigurationError(f"broker_transport_options[{key!r}] in {module.__name__}: set by the "
                                     f"coordinator ({OWNED_TRANSPORT_OPTIONS[key]})")
    return values


def _unsafe_serializers(values: dict[str, Any]) -> list[str]:
    """Names of serializer settings among ``values`` that allow more than JSON."""
    found = []
    for name in ("task_serializer", "result_serializer", "event_serializer", "accept_content",
                 "result_accept_content", "event_accept_content"):
        value = values.get(name)
        items = [value] if isinstance(value, str) else list(value or [])
        if any(item in UNSAFE_SERIALIZERS for item in items):
            found.append(name)
    return found
