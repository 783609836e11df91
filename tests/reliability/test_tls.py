"""Password and TLS through the URL and the environment, against a real TLS redis-server with a
self-signed CA; certificate checking cannot be turned off by accident."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from coordinator import (
    ConfigurationError,
    JobQueueCoordinator,
    JobState,
    RedisUnavailableError,
)
from coordinator.settings import settings_from_env
from tests import processors
from tests.support.faults import lost_and_duplicated
from tests.support.tls import PASSWORD, tls_url
from tests.support.waiting import WAIT_S


def test_jobs_run_over_tls_with_a_password(tls_server, certs, report) -> None:
    with JobQueueCoordinator(tls_url(tls_server), prefix="tls", tls_ca_file=str(certs / "ca.crt"),
                             tls_cert_file=str(certs / "client.crt"), tls_key_file=str(certs / "client.key"),
                             stalled_interval_ms=1000, lock_duration_ms=2000) as coord:
        coord.create_queue("q")
        job = coord.enqueue_job("q", {"secure": True})
        coord.register_worker("q", processors.echo, pool="solo")
        done = coord.wait_for_job("q", job.id, timeout=WAIT_S)
        assert done.state is JobState.COMPLETED and done.result["echo"] == {"secure": True}
        assert coord.app.conf.broker_use_ssl["ssl_ca_certs"] == str(certs / "ca.crt")
        log = Path(coord.get_all_worker_status()[0].log_file).read_text()
        assert PASSWORD not in log
        plain_port = coord._redis.config_get("port")["port"]
        assert plain_port == "0"  # TLS is the only way in: the worker's connections were TLS too
        lost, duplicated = lost_and_duplicated(coord, "q", [job.id])
        coord.delete_queue("q")
    report.add("TLS + password (self-signed CA, client cert)", 1, lost, duplicated,
               note=f"ran on worker pid {done.result['pid']}; server's plain-text port: {plain_port}")


def test_server_certificate_is_checked(tls_server) -> None:
    coord = JobQueueCoordinator(tls_url(tls_server), prefix="tls-nocheck", socket_timeout_s=2)
    with pytest.raises(RedisUnavailableError, match="certificate verify failed") as info:
        coord.create_queue("q")
    assert PASSWORD not in str(info.value)


def test_turning_certificate_checks_off_needs_an_explicit_opt_out(tls_server) -> None:
    url = tls_url(tls_server) + "?ssl_cert_reqs=none"
    with pytest.raises(ValidationError, match="tls_insecure"):
        JobQueueCoordinator(url, prefix="tls-insecure")
    with JobQueueCoordinator(url, prefix="tls-insecure", tls_insecure=True) as coord:
        coord.create_queue("q")
        assert coord.get_queue_names() == ["q"]
        coord.delete_queue("q")


def test_wrong_password_is_a_configuration_error(tls_server, certs) -> None:
    url = f"rediss://:wrong@127.0.0.1:{tls_server.port}/0"
    coord = JobQueueCoordinator(url, prefix="tls-badpass", tls_ca_file=str(certs / "ca.crt"))
    with pytest.raises(ConfigurationError, match="password") as info:
        coord.create_queue("q")
    assert "wrong" not in str(info.value)


def test_tls_from_the_environment(certs) -> None:
    settings = settings_from_env({"REDIS_HOST": "127.0.0.1", "REDIS_TLS": "1", "REDIS_PASSWORD": PASSWORD,
                                  "REDIS_TLS_CA": str(certs / "ca.crt")})
    assert settings.url.startswith("rediss://") and settings.tls_ca_file == str(certs / "ca.crt")
    with pytest.raises(ValidationError, match="tls_cert_file"):
        settings_from_env({"REDIS_TLS": "1", "REDIS_TLS_CERT": str(certs / "client.crt")})
