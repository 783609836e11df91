"""A TLS `redis-server` with a self-signed CA, server and client certificates (made with the
`openssl` binary: skipped without it on a laptop, a failure in CI). Fixtures ``certs`` and
``tls_server`` (loaded as a plugin by tests/conftest.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.needs import require_openssl
from tests.support.servers import RedisServer

PASSWORD = "tls-test-pass"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    """A CA, a server certificate for 127.0.0.1, and a client certificate, all signed by the CA."""
    require_openssl()
    d = tmp_path_factory.mktemp("certs")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
            "-days", "2", "-subj", "/CN=jqc-test-ca", cwd=d)
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.crt", "-days", "2", "-extfile", "san.cnf", cwd=d)
    return d


@pytest.fixture(scope="module")
def tls_server(certs: Path):
    with RedisServer("--tls-cert-file", str(certs / "server.crt"), "--tls-key-file", str(certs / "server.key"),
                     "--tls-ca-cert-file", str(certs / "ca.crt"), "--tls-auth-clients", "optional",
                     "--requirepass", PASSWORD, tls=True) as server:
        yield server


def tls_url(server: RedisServer) -> str:
    return f"rediss://:{PASSWORD}@127.0.0.1:{server.port}/0"
