"""Redis connections of the coordinator: password and TLS from the URL and the environment,
bounded timeouts, retries on dropped connections only, and the one place where redis-py's
errors become `CoordinatorError`s."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.client
import redis.asyncio.retry
import redis.asyncio.sentinel
from redis.backoff import ExponentialBackoff
from redis.client import Pipeline
from redis.retry import Retry
from redis.sentinel import Sentinel

from coordinator.errors import ConfigurationError, RedisUnavailableError
from coordinator.sentinel import SentinelTarget
from coordinator.settings import Settings, redact_url

#: Retries of a command whose connection dropped (not of one that timed out: that would
#: stretch a caller's wait past ``socket_timeout_s``). Every script is safe to repeat.
CONNECTION_RETRIES = 3


def tls_options(settings: Settings) -> dict[str, Any]:
    """SSL keywords shared by redis-py, kombu (``broker_use_ssl``) and Celery's Redis backend:
    certificates are always checked unless the user opted out with ``tls_insecure``."""
    if not settings.uses_tls:
        return {}
    options: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_NONE if settings.tls_insecure else ssl.CERT_REQUIRED}
    if settings.tls_ca_file:
        options["ssl_ca_certs"] = settings.tls_ca_file
    if settings.tls_cert_file:
        options["ssl_certfile"] = settings.tls_cert_file
        options["ssl_keyfile"] = settings.tls_key_file
    return options


def _client_options(settings: Settings, client_name: str | None, extra_read_s: float,
                    retry: Any) -> dict[str, Any]:
    """Keywords of a registry client, sync or asyncio (``retry``: that flavour's Retry)."""
    kwargs: dict[str, Any] = dict(
        decode_responses=True, socket_timeout=settings.socket_timeout_s + extra_read_s, client_name=client_name,
        socket_connect_timeout=settings.socket_timeout_s, health_check_interval=30,
        retry=retry(ExponentialBackoff(cap=0.5, base=0.05), CONNECTION_RETRIES,
                    supported_errors=(redis.ConnectionError,)),
    )
    if settings.uses_tls and settings.url.startswith("rediss://"):
        kwargs.update(tls_options(settings))
    return kwargs


def connect(settings: Settings, *, client_name: str | None = None, extra_read_s: float = 0.0) -> redis.Redis:
    """The client for the registry: decoded strings, timeouts, retries, translated errors.
    ``extra_read_s`` lengthens the read timeout for a connection that blocks (XREAD BLOCK)."""
    kwargs = _client_options(settings, client_name, extra_read_s, Retry)
    target = settings.sentinel_target(settings.url)
    if target is not None:
        client = _sentinel_master(settings, target, kwargs, Sentinel, CoordinatorRedis)
    else:
        client = CoordinatorRedis.from_url(settings.url, **kwargs)
    client.coordinator_settings = settings
    return client


def connect_async(settings: Settings, *, client_name: str | None = None,
                  extra_read_s: float = 0.0) -> AsyncCoordinatorRedis:
    """`connect` for asyncio: a redis.asyncio client with the same options and error translation."""
    kwargs = _client_options(settings, client_name, extra_read_s, redis.asyncio.retry.Retry)
    target = settings.sentinel_target(settings.url)
    if target is not None:
        client = _sentinel_master(settings, target, kwargs, redis.asyncio.sentinel.Sentinel, AsyncCoordinatorRedis)
    else:
        client = AsyncCoordinatorRedis.from_url(settings.url, **kwargs)
    client.coordinator_settings = settings
    return client


def _sentinel_master(settings: Settings, target: SentinelTarget, kwargs: dict[str, Any],
                     sentinel_class: Any, redis_class: type[Any]) -> Any:
    """A client of the master the sentinels name; after a failover its next connection asks them
    again, so a dropped command is retried (CONNECTION_RETRIES) against the new master."""
    sentinel_kwargs = dict(target.sentinel_kwargs, socket_timeout=settings.socket_timeout_s,
                           socket_connect_timeout=settings.socket_timeout_s)
    sentinels = sentinel_class(list(target.sentinels), sentinel_kwargs=sentinel_kwargs)
    credentials = {"username": target.username, "password": target.password}
    return sentinels.master_for(target.master, redis_class=redis_class, db=target.db, **credentials, **kwargs)


@contextmanager
def translated(settings: Settings) -> Iterator[None]:
    """Turn redis-py's connection errors into the coordinator's, naming the URL without its password."""
    try:
        yield
    except redis.AuthenticationError as exc:
        raise ConfigurationError(f"password: Redis at {redact_url(settings.url)} refused it ({exc})") from None
    except redis.exceptions.NoPermissionError as exc:
        raise ConfigurationError(
            f"acl: the Redis user may not do this ({exc}); coordinator.acl.acl_rules() lists what it needs"
        ) from None
    except redis.TimeoutError as exc:
        raise RedisUnavailableError(
            f"Redis at {redact_url(settings.url)} did not answer within {settings.socket_timeout_s} s "
            f"(socket_timeout_s): {exc}"
        ) from exc
    except redis.ConnectionError as exc:
        raise RedisUnavailableError(f"cannot reach Redis at {redact_url(settings.url)}: {exc}") from exc


class CoordinatorRedis(redis.Redis):
    """redis.Redis whose commands and pipelines raise the coordinator's errors."""

    coordinator_settings: Settings

    def execute_command(self, *args: Any, **options: Any) -> Any:
        with translated(self.coordinator_settings):
            return super().execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Pipeline:
        pipe = CoordinatorPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
        pipe.coordinator_settings = self.coordinator_settings
        return pipe


class CoordinatorPipeline(Pipeline):
    coordinator_settings: Settings

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        with translated(self.coordinator_settings):
            return super().execute(raise_on_error)


class AsyncCoordinatorRedis(redis.asyncio.Redis):
    """redis.asyncio.Redis whose commands and pipelines raise the coordinator's errors."""

    coordinator_settings: Settings

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        with translated(self.coordinator_settings):
            return await super().execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> redis.asyncio.client.Pipeline:
        pipe = AsyncCoordinatorPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
        pipe.coordinator_settings = self.coordinator_settings
        return pipe


class AsyncCoordinatorPipeline(redis.asyncio.client.Pipeline):
    coordinator_settings: Settings

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        with translated(self.coordinator_settings):
            return await super().execute(raise_on_error)
