"""Settings from the constructor and the environment; secrets redacted."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from coordinator import ConfigurationError, JobQueueCoordinator
from coordinator.settings import redact_url, settings_from_env


def test_from_env_builds_the_url_from_parts() -> None:
    settings = settings_from_env({
        "REDIS_HOST": "redis.internal", "REDIS_PORT": "6380", "REDIS_PASSWORD": "s3cr:t", "REDIS_DB": "2",
        "REDIS_TLS": "true", "LOG_LEVEL": "debug", "WORKER_CONCURRENCY": "4", "MAX_JOB_RETRIES": "6",
    })
    assert settings.url == "rediss://:s3cr%3At@redis.internal:6380/2"
    assert (settings.log_level, settings.worker_concurrency, settings.default_max_retries) == ("DEBUG", 4, 6)
    assert "s3cr" not in redact_url(settings.url)


def test_redis_url_wins_and_bad_values_name_the_setting() -> None:
    assert settings_from_env({"REDIS_URL": "redis://h:1/3", "REDIS_HOST": "x"}).url == "redis://h:1/3"
    with pytest.raises(ValidationError, match="worker_concurrency"):
        settings_from_env({"WORKER_CONCURRENCY": "zero"})
    with pytest.raises(ConfigurationError, match="REDIS_PORT"):
        settings_from_env({"REDIS_PORT": "abc"})
    with pytest.raises(ValidationError, match="url"):
        JobQueueCoordinator("http://127.0.0.1:6379")
    with pytest.raises(ValidationError, match="prefix"):
        JobQueueCoordinator("redis://127.0.0.1:6379/0", prefix="a:b")


def test_from_env_coordinator_uses_the_environment(monkeypatch, prefix: str) -> None:
    from tests.support.env import REDIS_URL

    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    monkeypatch.setenv("JQC_PREFIX", prefix)
    monkeypatch.setenv("MAX_JOB_RETRIES", "9")
    with JobQueueCoordinator.from_env() as coord:
        coord.create_queue("q")
        assert coord.enqueue_job("q", 1).options.max_retries == 9
        assert coord.get_queue_names() == ["q"]
