"""What a test needs beyond Redis and Python (RabbitMQ, network namespaces, `openssl`): missing on
a laptop, the test is skipped with the reason; in CI (``CI=true``) a missing need is a failure."""

from __future__ import annotations

import os
import shutil
import socket
from urllib.parse import urlsplit

import pytest

AMQP_URL = os.environ.get("JQC_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
IN_CI = os.environ.get("CI", "").lower() == "true"


def skip_or_fail(missing: str | None) -> None:
    """Nothing if ``missing`` is None; else skip the test with that reason, or fail it in CI."""
    if missing is None:
        return
    if IN_CI:
        pytest.fail(f"CI must run this test: {missing}")
    pytest.skip(missing)


def rabbitmq_missing() -> str | None:
    """Why RabbitMQ at AMQP_URL cannot be used, or None if it answers."""
    parts = urlsplit(AMQP_URL)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), timeout=2).close()
    except OSError as exc:
        return f"RabbitMQ is not reachable at {parts.hostname}:{parts.port or 5672} ({exc}); set JQC_TEST_AMQP_URL"
    return None


def openssl_missing() -> str | None:
    """Why the `openssl` binary (test certificates) cannot be used, or None."""
    return None if shutil.which("openssl") else "the `openssl` binary is not installed (test certificates)"


def require_rabbitmq() -> None:
    skip_or_fail(rabbitmq_missing())


def require_openssl() -> None:
    skip_or_fail(openssl_missing())
