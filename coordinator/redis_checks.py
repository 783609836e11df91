"""What in a Redis server's configuration can lose jobs: eviction, no persistence, failing
persistence writes, and a registry that vanished (its epoch marker gone or new).

Used by `get_health()` (`coordinator.health`) and by a worker that warns about them when it
starts (`runtime.maintenance`), so the worker does not depend on the health check.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from coordinator.errors import RedisUnavailableError
from coordinator.models import HealthCheck, HealthStatus, HealthThresholds
from coordinator.registry import Registry
from coordinator.settings import Settings, redact_url


def safe_message(settings: Settings, exc: BaseException) -> str:
    """An error message with any form of the Redis URL or password removed."""
    text = str(exc)
    for url in (settings.url, settings.broker_url):
        if url:
            text = text.replace(url, redact_url(url))
            password = urlsplit(url).password
            if password:
                text = text.replace(password, "***").replace(unquote(password), "***")
    return text


def redis_settings_warnings(registry: Registry, settings: Settings) -> list[str]:
    """What in the Redis configuration can lose jobs (eviction, no persistence), for a worker to
    warn about when it starts."""
    return [f"{c.name}: {c.detail}" for c in check_redis_settings(registry, settings, HealthThresholds())
            if c.status is not HealthStatus.HEALTHY and c.name != "registry"]


def check_redis_settings(registry: Registry, settings: Settings, limits: HealthThresholds) -> list[HealthCheck]:
    """maxmemory-policy and persistence: INFO works for any user; CONFIG GET may be refused."""
    pipe = registry.client.pipeline(transaction=False)
    pipe.info("persistence")
    pipe.info("memory")
    pipe.config_get("save")
    pipe.get(registry.keys.epoch)
    try:
        persistence, memory, save, epoch = pipe.execute(raise_on_error=False)
    except RedisUnavailableError as exc:
        return [HealthCheck(name="redis_settings", status=HealthStatus.UNHEALTHY,
                            detail=safe_message(settings, exc))]
    checks = [_registry_check(registry, epoch)]
    policy = memory.get("maxmemory_policy", "unknown") if isinstance(memory, dict) else "unknown"
    maxmemory = memory.get("maxmemory", 0) if isinstance(memory, dict) else 0
    eviction = {"maxmemory_policy": policy, "maxmemory": maxmemory}
    if policy not in ("noeviction", "unknown"):
        checks.append(HealthCheck(
            name="redis_eviction", status=HealthStatus.DEGRADED, data=eviction,
            detail=f"maxmemory-policy is {policy}: under memory pressure Redis deletes keys, and with "
                   "them jobs; set it to noeviction",
        ))
    else:
        checks.append(HealthCheck(name="redis_eviction", status=HealthStatus.HEALTHY, data=eviction,
                                  detail=f"maxmemory-policy {policy}"))
    checks.append(_persistence_check(persistence, save, limits))
    return checks


def _registry_check(registry: Registry, epoch: Any) -> HealthCheck:
    """Unhealthy once the registry's epoch marker has vanished or changed under this process."""
    if isinstance(epoch, Exception) or not registry.epoch_lost(epoch):
        return HealthCheck(name="registry", status=HealthStatus.HEALTHY, detail="registry intact")
    return HealthCheck(
        name="registry", status=HealthStatus.UNHEALTHY, data={"epoch": epoch},
        detail="the registry was lost (its epoch marker is gone or new): Redis restarted without "
               "persistence, was flushed or evicted keys; jobs recorded before are gone",
    )


def _persistence_check(persistence: Any, save: Any, limits: HealthThresholds) -> HealthCheck:
    info = persistence if isinstance(persistence, dict) else {}
    aof = str(info.get("aof_enabled", "0")) == "1"
    save_rule = save.get("save") if isinstance(save, dict) else None
    data: dict[str, Any] = {"appendonly": aof, "save": save_rule}
    failing = [name for name in ("rdb_last_bgsave_status", "aof_last_write_status", "aof_last_bgrewrite_status")
               if info.get(name, "ok") != "ok"]
    if failing:
        return HealthCheck(name="redis_persistence", status=HealthStatus.DEGRADED, data=data,
                           detail=f"persistence is failing ({', '.join(failing)} not ok)")
    if aof:
        return HealthCheck(name="redis_persistence", status=HealthStatus.HEALTHY, data=data, detail="AOF on")
    if save_rule:
        return HealthCheck(name="redis_persistence", status=HealthStatus.HEALTHY, data=data,
                           detail=f"RDB snapshots only (save {save_rule}): a crash loses the jobs since the last one")
    if save_rule is None:
        return HealthCheck(name="redis_persistence", status=HealthStatus.HEALTHY, data=data,
                           detail="AOF off; CONFIG GET save refused, RDB snapshots unknown")
    if not limits.require_persistence:
        return HealthCheck(name="redis_persistence", status=HealthStatus.HEALTHY, data=data,
                           detail="no persistence (allowed by the thresholds)")
    return HealthCheck(name="redis_persistence", status=HealthStatus.DEGRADED, data=data,
                       detail="no persistence (appendonly no, save \"\"): a Redis restart loses every job")
