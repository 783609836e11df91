"""A beat of its own against Redis servers set up like production: over TLS (rediss://,
self-signed CA, client certificate, password), where redbeat's connection needs the registry's
certificate settings, and under the documented least-privilege ACL user."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator import JobQueueCoordinator
from coordinator.acl import acl_rules
from tests.support.beats import assert_one_job_per_tick, runs
from tests.support.servers import RedisServer
from tests.support.tls import PASSWORD, tls_url
from tests.support.waiting import wait_until

pytestmark = pytest.mark.reliability


def test_beat_fires_over_tls(tls_server, certs: Path, beats, prefix: str) -> None:
    tls = {"REDIS_TLS_CA": str(certs / "ca.crt"), "REDIS_TLS_CERT": str(certs / "client.crt"),
           "REDIS_TLS_KEY": str(certs / "client.key")}
    url = tls_url(tls_server)
    with JobQueueCoordinator(url, prefix=prefix, tls_ca_file=tls["REDIS_TLS_CA"],
                             tls_cert_file=tls["REDIS_TLS_CERT"], tls_key_file=tls["REDIS_TLS_KEY"]) as coord:
        coord.create_queue("q")
        coord.schedule_recurring_job("q", "tick", {}, every=1000, key="k")
        beat = beats(REDIS_URL=url, **tls)
        wait_until(lambda: len(runs(coord, "q", "k")) >= 2, 30)
        assert_one_job_per_tick(coord, "q", "k", 1000)
        assert PASSWORD not in beat.log()
        coord.delete_queue("q")


def test_beat_fires_under_the_least_privilege_acl(beats, prefix: str) -> None:
    with RedisServer() as server:
        admin = server.client()
        admin.execute_command("ACL", "SETUSER", "jqc", "on", ">pw", *acl_rules(prefix))
        url = f"redis://jqc:pw@127.0.0.1:{server.port}/0"
        with JobQueueCoordinator(url, prefix=prefix) as coord:
            coord.create_queue("q")
            coord.schedule_recurring_job("q", "tick", {}, every=500, key="k")
            beats(REDIS_URL=url)
            wait_until(lambda: len(runs(coord, "q", "k")) >= 3, 30)
            assert_one_job_per_tick(coord, "q", "k", 500)
        assert admin.acl_log() == []
