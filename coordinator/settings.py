"""Coordinator settings: the constructor's keywords, or `from_env()`; secrets never leave here unredacted."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from coordinator.errors import ConfigurationError
from coordinator.sentinel import SentinelTarget, is_sentinel_url, parse_sentinel_url
from coordinator.validation import DEFAULT_MAX_JOB_SIZE, check_prefix

if TYPE_CHECKING:
    from celery import Celery


class Settings(BaseModel):
    """Everything the coordinator and its workers need to reach Redis and behave alike."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(..., description="Redis URL of the registry, results and beat (and broker by default)")
    broker_url: str | None = Field(None, description="broker URL when it is not the Redis at url")
    prefix: str = "jqc"
    max_job_size: int = Field(DEFAULT_MAX_JOB_SIZE, ge=1, description="bytes of encoded job data")
    default_max_retries: int = Field(3, ge=0, description="MAX_JOB_RETRIES")
    worker_concurrency: int = Field(2, ge=1, description="WORKER_CONCURRENCY")
    log_level: str = "INFO"
    task_events: bool = Field(False, description="TASK_EVENTS: managed workers send Celery task events from "
                              "the start (-E); without it Flower turns them on while it runs")
    lock_duration_ms: int = Field(30_000, ge=500, description="TTL of a running job's lock")
    stalled_interval_ms: int = Field(30_000, ge=200, description="how often workers look for stalled jobs")
    max_stalled_count: int = Field(1, ge=0, description="stalls after which a job fails")
    cancel_check_ms: int = Field(500, ge=50, le=10_000, description="how often a worker checks that its running "
                                 "jobs still own their locks (renewing them): how soon a cancel reaches a job")
    cancel_grace_ms: int = Field(10_000, ge=0, description="how long a cancelled job may keep running before "
                                 "the worker interrupts it")
    promote_interval_ms: int = Field(200, ge=10, description="how often workers move due delayed jobs")
    socket_timeout_s: float = Field(5.0, gt=0, description="Redis read/write timeout of coordinator calls")
    events_max_len: int = Field(10_000, ge=100, description="approximate cap of each queue's event stream")
    config_cache_s: float = Field(2.0, ge=0, description="how long a producer trusts its copy of a queue's config")
    visibility_timeout_s: int = Field(
        3600, ge=1, description="kombu re-delivers an unacked message after this; a duplicate is dropped by token"
    )
    tls_ca_file: str | None = Field(None, description="REDIS_TLS_CA: CA bundle that signed the server certificate")
    tls_cert_file: str | None = Field(None, description="REDIS_TLS_CERT: client certificate (optional)")
    tls_key_file: str | None = Field(None, description="REDIS_TLS_KEY: client key (optional)")
    tls_insecure: bool = Field(False, description="REDIS_TLS_INSECURE: accept any server certificate "
                                                  "(not for production)")
    beat_max_interval_s: float = Field(1.0, gt=0, le=60, description="longest sleep of a beat's loop: how soon "
                                       "it sees a schedule added at run time")
    beat_lock_timeout_s: int = Field(5, ge=2, le=600, description="TTL of the beat lock: how soon a standby beat "
                                     "takes over from a dead one")
    # Redis Sentinel (issue 9): used when url or broker_url is a sentinel:// URL (coordinator/sentinel.py).
    celery_config: str | None = Field(
        None, description="CELERY_CONFIG_MODULE: the Celery config module loaded with config_from_object "
        "(None: `celeryconfig` when it can be imported)")
    sentinel_master: str | None = Field(None, description="REDIS_SENTINEL_MASTER: master group, if the URL has none")
    sentinel_password: str | None = Field(
        None, repr=False, description="REDIS_SENTINEL_PASSWORD: the sentinels' own password"
    )

    _check_prefix = field_validator("prefix")(check_prefix)

    @model_validator(mode="after")
    def _beat_lock_outlives_a_loop(self) -> Settings:
        if self.beat_lock_timeout_s < 2 * self.beat_max_interval_s:
            raise ValueError("beat_lock_timeout_s: must be at least twice beat_max_interval_s "
                             "(the beat renews its lock once per loop)")
        return self

    @field_validator("url", "broker_url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return value
        scheme = urlsplit(value).scheme
        if scheme not in ("redis", "rediss", "unix", "amqp", "amqps", "sentinel"):
            raise ValueError(f"url: unsupported scheme {scheme!r} in {redact_url(value)}")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(f"log_level: {value!r} is not one of DEBUG INFO WARNING ERROR CRITICAL")
        return level

    @model_validator(mode="after")
    def _certificates_checked(self) -> Settings:
        for url in (self.url, self.broker_url):
            if url and _disables_cert_check(url) and not self.tls_insecure:
                raise ValueError(
                    "tls_insecure: the URL turns off certificate checking (ssl_cert_reqs); set "
                    "tls_insecure=True (REDIS_TLS_INSECURE=1) to accept that, or give tls_ca_file"
                )
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file: a client certificate needs tls_key_file too, and the reverse")
        return self

    @model_validator(mode="after")
    def _sentinel_complete(self) -> Settings:
        for url in (self.url, self.broker_url):
            if url and is_sentinel_url(url):
                try:
                    self.sentinel_target(url)
                except ConfigurationError as exc:
                    raise ValueError(str(exc)) from None
        return self

    @property
    def uses_tls(self) -> bool:
        return any(urlsplit(u).scheme in ("rediss", "amqps") for u in (self.url, self.broker_url) if u)

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or self.url

    @property
    def broker_is_redis(self) -> bool:
        return urlsplit(self.effective_broker_url).scheme in ("redis", "rediss", "unix", "sentinel")

    def sentinel_target(self, url: str) -> SentinelTarget | None:
        """The Sentinel target of ``url`` (the registry's or the broker's), or None if it is not sentinel://."""
        if not is_sentinel_url(url):
            return None
        return parse_sentinel_url(url, self.sentinel_master, self.sentinel_password)


def settings_from_env(environ: dict[str, str] | None = None, **overrides: object) -> Settings:
    """Read REDIS_URL (or REDIS_HOST / REDIS_PORT / REDIS_PASSWORD / REDIS_DB / REDIS_TLS),
    LOG_LEVEL, WORKER_CONCURRENCY, MAX_JOB_RETRIES, JQC_PREFIX and CELERY_CONFIG_MODULE."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {"url": env.get("REDIS_URL") or _url_from_parts(env)}
    if env.get("BROKER_URL"):
        values["broker_url"] = env["BROKER_URL"]
    for name, field in (
        ("REDIS_TLS_CA", "tls_ca_file"),
        ("REDIS_TLS_CERT", "tls_cert_file"),
        ("REDIS_TLS_KEY", "tls_key_file"),
        ("REDIS_TLS_INSECURE", "tls_insecure"),
        ("LOG_LEVEL", "log_level"),
        ("TASK_EVENTS", "task_events"),
        ("WORKER_CONCURRENCY", "worker_concurrency"),
        ("MAX_JOB_RETRIES", "default_max_retries"),
        ("JQC_PREFIX", "prefix"),
        ("REDIS_SENTINEL_MASTER", "sentinel_master"),
        ("REDIS_SENTINEL_PASSWORD", "sentinel_password"),
        ("CELERY_CONFIG_MODULE", "celery_config"),
    ):
        if env.get(name):
            values[field] = env[name]
    values.update(overrides)
    return Settings(**values)


def _url_from_parts(env: os._Environ[str] | dict[str, str]) -> str:
    host = env.get("REDIS_HOST", "127.0.0.1")
    port = env.get("REDIS_PORT", "6379")
    db = env.get("REDIS_DB", "0")
    tls = env.get("REDIS_TLS", "").lower() in ("1", "true", "yes", "on")
    if not port.isdigit() or not db.isdigit():
        raise ConfigurationError("REDIS_PORT and REDIS_DB must be whole numbers")
    password = env.get("REDIS_PASSWORD")
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"{'rediss' if tls else 'redis'}://{auth}{host}:{port}/{db}"


def _disables_cert_check(url: str) -> bool:
    query = dict(parse_qsl(urlsplit(url).query))
    return query.get("ssl_cert_reqs", "").lower() in ("none", "cert_none", "optional", "cert_optional")


def redact_url(url: str) -> str:
    """The URL with its password replaced by ``***``, for logs, errors and health output."""
    if ";" in url:  # kombu's multi-host form (Sentinel): redact each part
        return ";".join(redact_url(part) for part in url.split(";"))
    if "," in url.split("?", 1)[0]:  # several sentinels in one URL: the host list is not one netloc
        return re.sub(r"://([^:/@]*):[^@/]*@", r"://\1:***@", url)
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}{port}", parts.path, parts.query, parts.fragment))


_Built = TypeVar("_Built", bound="BuiltFromSettings")


class BuiltFromSettings:
    """The constructors the sync and async coordinators share: keywords, the environment, or
    validated `Settings`; each subclass builds itself in ``_init`` (no connection opened there)."""

    def __init__(self, url: str, *, broker_url: str | None = None, app: Celery | None = None,
                 prefix: str = "jqc", max_job_size: int | None = None, **settings: Any) -> None:
        if max_job_size is not None:
            settings["max_job_size"] = max_job_size
        self._init(Settings(url=url, broker_url=broker_url, prefix=prefix, **settings), app)

    @classmethod
    def from_env(cls: type[_Built], app: Celery | None = None, **overrides: Any) -> _Built:
        """Settings from REDIS_URL (or REDIS_HOST/PORT/PASSWORD/DB/TLS), LOG_LEVEL,
        WORKER_CONCURRENCY, MAX_JOB_RETRIES, JQC_PREFIX and BROKER_URL."""
        return cls.from_settings(settings_from_env(**overrides), app=app)

    @classmethod
    def from_settings(cls: type[_Built], settings: Settings, app: Celery | None = None) -> _Built:
        """Built from already validated `Settings`."""
        built = cls.__new__(cls)
        built._init(settings, app)
        return built

    def _init(self, settings: Settings, app: Celery | None) -> None:
        raise NotImplementedError
