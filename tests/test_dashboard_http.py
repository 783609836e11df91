"""The dashboard at the HTTP level, against the real app and the real Redis: who may enter, who
may act, CSRF on every action, escaped output, mounting, the events stream and the CLI."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from coordinator import JobQueueCoordinator, JobState
from coordinator.cli import main
from coordinator.dashboard import create_app
from coordinator.dashboard.auth import hash_password, parse_users, verify_password
from coordinator.errors import ConfigurationError
from tests.support.dashboard import serving
from tests.support.env import REDIS_URL
from tests.support.servers import free_port

LOOPBACK = ("127.0.0.1", 50000)
REMOTE = ("203.0.113.7", 50000)
FAST = 1000  # PBKDF2 iterations for test users: the format is the same, the work is not
USERS = (f"ann:operator:{hash_password('ann-pw', iterations=FAST)},"
         f"vic:viewer:{hash_password('vic-pw', iterations=FAST)}")


def basic(name: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


@pytest.fixture
def cancelled_job(coord: JobQueueCoordinator) -> Any:
    coord.create_queue("q")
    job = coord.enqueue_job("q", {"n": 1}, name="one")
    assert coord.cancel_job("q", job.id)
    return job


def _client(coord: JobQueueCoordinator, users: str = "", client: tuple[str, int] = LOOPBACK,
            **headers: str) -> TestClient:
    return TestClient(from_address(create_app(coord, users=users), client), headers=headers)


def from_address(app: Any, address: tuple[str, int]) -> Any:
    """The app as reached from ``address`` (TestClient's own ``client=`` needs Starlette 0.39+)."""

    async def reached(scope: Any, receive: Any, send: Any) -> None:
        await app({**scope, "client": address}, receive, send)

    return reached


def _token(client: TestClient, path: str = "/queues") -> str:
    assert client.get(path).status_code == 200
    token = client.cookies.get("jqc_csrf")
    assert token
    return token


def test_without_users_only_loopback_clients_get_in(coord: JobQueueCoordinator, cancelled_job: Any) -> None:
    local = _client(coord)
    page = local.get("/queues")
    assert page.status_code == 200 and "local · operator" in page.text
    remote = _client(coord, client=REMOTE)
    refused = remote.get("/queues")
    assert refused.status_code == 403 and "JQC_DASHBOARD_USERS" in refused.text
    assert remote.post(f"/queues/q/jobs/{cancelled_job.id}/retry").status_code == 403
    assert coord.get_job("q", cancelled_job.id).state is JobState.CANCELLED


def test_users_must_authenticate_even_on_loopback(coord: JobQueueCoordinator, cancelled_job: Any) -> None:
    client = _client(coord, USERS)
    anonymous = client.get("/queues")
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Basic")
    assert client.get("/queues", headers=basic("ann", "wrong")).status_code == 401
    assert client.get("/queues", headers=basic("nobody", "ann-pw")).status_code == 401
    assert client.get("/queues", headers=basic("ann", "ann-pw")).status_code == 200
    remote = _client(coord, USERS, client=REMOTE, **basic("vic", "vic-pw"))
    assert remote.get(f"/queues/q/jobs/{cancelled_job.id}").status_code == 200


def test_a_viewer_reads_but_cannot_act(coord: JobQueueCoordinator, cancelled_job: Any) -> None:
    viewer = _client(coord, USERS, client=REMOTE, **basic("vic", "vic-pw"))
    token = _token(viewer, f"/queues/q/jobs/{cancelled_job.id}")
    page = viewer.get(f"/queues/q/jobs/{cancelled_job.id}")
    assert "vic · viewer" in page.text and 'id="retry"' not in page.text
    refused = viewer.post(f"/queues/q/jobs/{cancelled_job.id}/retry", headers={"X-CSRF-Token": token})
    assert refused.status_code == 403 and "viewer" in refused.text
    assert viewer.post("/queues/q/pause", headers={"X-CSRF-Token": token}).status_code == 403
    assert coord.get_job("q", cancelled_job.id).state is JobState.CANCELLED
    assert not coord.get_queue("q").paused


def test_every_action_needs_the_users_csrf_token(coord: JobQueueCoordinator, cancelled_job: Any) -> None:
    url = f"/queues/q/jobs/{cancelled_job.id}/retry"
    operator = _client(coord, USERS, client=REMOTE, **basic("ann", "ann-pw"))
    token = _token(operator)
    assert operator.post(url).status_code == 403  # no header
    assert operator.post(url, headers={"X-CSRF-Token": token + "x"}).status_code == 403
    viewer = _client(coord, USERS, client=REMOTE, **basic("vic", "vic-pw"))
    vic_token = _token(viewer)
    operator.cookies.set("jqc_csrf", vic_token)  # another user's valid token is not this user's
    assert operator.post(url, headers={"X-CSRF-Token": vic_token}).status_code == 403
    operator.cookies.set("jqc_csrf", token)
    cross = operator.post(url, headers={"X-CSRF-Token": token, "Origin": "https://evil.example"})
    assert cross.status_code == 403 and "origin" in cross.text
    for path in ("/queues/q/pause", "/queues/q/limiter", "/queues/q/bulk", "/workers/w1/pause",
                 "/recurring/q/k/remove", f"/queues/q/jobs/{cancelled_job.id}/remove"):
        assert operator.post(path).status_code == 403, path
    assert coord.get_job("q", cancelled_job.id).state is JobState.CANCELLED
    done = operator.post(url, headers={"X-CSRF-Token": token, "Origin": "http://testserver"})
    assert done.status_code == 200 and "retried" in done.text
    assert coord.get_job("q", cancelled_job.id).state is JobState.WAITING


def test_actions_answer_with_the_outcome_and_name_bad_fields(coord: JobQueueCoordinator, cancelled_job: Any) -> None:
    client = _client(coord)
    headers = {"X-CSRF-Token": _token(client)}
    job_url = f"/queues/q/jobs/{cancelled_job.id}"
    refused = client.post(f"{job_url}/promote", headers=headers)
    assert refused.status_code == 409 and "is cancelled" in refused.text
    bad = client.post(f"{job_url}/priority", data={"priority": "11"}, headers=headers)
    assert bad.status_code == 400 and "priority" in bad.text
    assert client.post("/queues/q/limiter", data={"max": "x", "duration": "1000"}, headers=headers).status_code == 400
    assert client.post("/queues/nope/pause", headers=headers).status_code == 404
    assert client.post("/queues/q/jobs/nope/retry", headers=headers).status_code == 404
    ok = client.post("/queues/q/limiter", data={"max": "7", "duration": "2000"}, headers=headers)
    assert ok.status_code == 200 and ok.headers["hx-trigger"] == "jqc-refresh"
    assert coord.get_queue("q").config.limiter.max == 7
    assert client.post("/queues/q/retention", data={"completed_count": "5", "failed_count": "6"},
                       headers=headers).status_code == 200
    assert coord.get_queue("q").config.retention.completed_count == 5
    assert client.post("/queues/q/pause", headers=headers).status_code == 200 and coord.get_queue("q").paused
    assert client.post("/queues/q/resume", headers=headers).status_code == 200 and not coord.get_queue("q").paused
    assert client.post(f"{job_url}/remove", headers=headers).status_code == 200
    assert coord.get_job("q", cancelled_job.id) is None


def test_job_actions_change_the_job(coord: JobQueueCoordinator) -> None:
    coord.create_queue("q")
    waiting = coord.enqueue_job("q", {"n": 1})
    delayed = coord.enqueue_job("q", {"n": 2}, delay=600_000)
    client = _client(coord)
    headers = {"X-CSRF-Token": _token(client)}
    changed = client.post(f"/queues/q/jobs/{waiting.id}/priority", data={"priority": "1"}, headers=headers)
    assert changed.status_code == 200
    assert coord.get_job("q", waiting.id).options.priority == 1
    assert client.post(f"/queues/q/jobs/{delayed.id}/promote", headers=headers).status_code == 200
    assert coord.get_job("q", delayed.id).state is JobState.WAITING
    assert client.post(f"/queues/q/jobs/{waiting.id}/cancel", headers=headers).status_code == 200
    assert coord.get_job("q", waiting.id).state is JobState.CANCELLED
    page = client.get(f"/queues/q/jobs/{waiting.id}").text
    assert 'id="retry"' in page and 'id="remove"' in page and 'id="cancel"' not in page
    assert [e.event for e in coord.events("q") if e.job_id == waiting.id] == ["waiting", "cancelled"]
    assert ">cancelled<" in page.split("Timeline", 1)[1]


def test_recurring_jobs_pause_resume_and_remove(coord: JobQueueCoordinator) -> None:
    coord.create_queue("q")
    coord.schedule_recurring_job("q", "nightly", {}, cron="0 3 * * *", key="nightly")
    client = _client(coord)
    headers = {"X-CSRF-Token": _token(client, "/recurring")}
    assert client.post("/recurring/q/nightly/pause", headers=headers).status_code == 200
    assert coord.get_recurring_jobs("q")[0].paused
    assert 'class="state paused"' in client.get("/recurring").text
    assert client.post("/recurring/q/nightly/resume", headers=headers).status_code == 200
    assert not coord.get_recurring_jobs("q")[0].paused
    assert client.post("/recurring/q/other/pause", headers=headers).status_code == 404
    assert client.post("/recurring/q/nightly/remove", headers=headers).status_code == 200
    assert coord.get_recurring_jobs("q") == []


def test_bulk_counts_then_runs_on_the_filter_only(coord: JobQueueCoordinator) -> None:
    coord.create_queue("q")
    keep = coord.enqueue_job("q", {"user": "bob"}, name="mail")
    hits = [coord.enqueue_job("q", {"user": "alice", "i": i}, name="mail") for i in range(3)]
    other = coord.enqueue_job("q", {"user": "alice"}, name="sms")
    client = _client(coord)
    headers = {"X-CSRF-Token": _token(client)}
    flt = {"state": "waiting", "name": "mail", "text": "ALICE"}
    preview = client.get("/queues/q/bulk", params={"action": "cancel", **flt})
    assert 'data-bulk-count="3"' in preview.text
    listed = client.get("/queues/q/jobs", params=flt).text
    assert all(job.id in listed for job in hits) and keep.id not in listed and other.id not in listed
    done = client.post("/queues/q/bulk", data={"action": "cancel", "expected": "3", **flt}, headers=headers)
    assert done.status_code == 200 and "cancel: 3 of 3 jobs." in done.text
    assert {coord.get_job("q", j.id).state for j in hits} == {JobState.CANCELLED}
    assert coord.get_job("q", keep.id).state is JobState.WAITING
    assert coord.get_job("q", other.id).state is JobState.WAITING
    young = client.post("/queues/q/bulk", data={"action": "remove", "state": "cancelled", "older_than_min": "60"},
                        headers=headers)
    assert "remove: 0 of 0 jobs." in young.text
    bad = client.post("/queues/q/bulk", data={"action": "drop", "state": "waiting"}, headers=headers)
    assert bad.status_code == 400 and "action" in bad.text


def test_job_data_is_escaped_and_truncated(coord: JobQueueCoordinator) -> None:
    coord.create_queue("q")
    job = coord.enqueue_job("q", {"html": "<script>alert(1)</script>", "big": "x" * 50_000}, name="<i>n</i>")
    page = _client(coord).get(f"/queues/q/jobs/{job.id}")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text and "<script>alert" not in page.text
    assert "&lt;i&gt;n&lt;/i&gt;" in page.text and "<i>n</i>" not in page.text
    assert "truncated" in page.text and "x" * 50_000 not in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert page.headers["x-frame-options"] == "DENY"


def test_mounts_under_a_prefix_in_another_asgi_app(coord: JobQueueCoordinator) -> None:
    coord.create_queue("q")
    host = Starlette(routes=[Mount("/ops/jobs", create_app(coord, users=""))])
    client = TestClient(from_address(host, LOOPBACK))
    page = client.get("/ops/jobs/queues")
    assert page.status_code == 200
    assert 'href="/ops/jobs/queues/q"' in page.text and 'src="/ops/jobs/static/htmx.min.js"' in page.text
    assert "Path=/ops/jobs" in page.headers["set-cookie"]
    assert client.get("/ops/jobs/static/app.js").status_code == 200
    token = client.cookies.get("jqc_csrf")
    assert client.post("/ops/jobs/queues/q/pause", headers={"X-CSRF-Token": token}).status_code == 200
    assert coord.get_queue("q").paused


def test_flower_links_both_ways(coord: JobQueueCoordinator) -> None:
    coord.create_queue("q")
    job = coord.enqueue_job("q", {}, name="one")
    client = TestClient(from_address(create_app(coord, users="", flower_url="http://127.0.0.1:5555/"), LOOPBACK))
    task_id = coord.get_job("q", job.id).celery_task_id
    assert task_id == f"{job.id}.1"
    assert f'href="http://127.0.0.1:5555/task/{task_id}"' in client.get(f"/queues/q/jobs/{job.id}").text
    found = client.get("/find", params={"id": task_id}, follow_redirects=False)
    assert found.status_code == 303 and found.headers["location"] == f"/queues/q/jobs/{job.id}"
    assert client.get("/find", params={"id": "nope.3"}).status_code == 404


def test_the_events_stream_says_which_queue_changed(coord: JobQueueCoordinator) -> None:
    coord.create_queue("q")
    seen: list[str] = []
    with serving(create_app(coord, users="")) as url, httpx.Client(base_url=url, timeout=30) as http, \
            http.stream("GET", "/events", params={"queue": "q"}) as stream:
        lines = stream.iter_lines()
        assert next(lines) == "retry: 2000"  # connected: the subscription is in place
        threading.Timer(0.3, coord.enqueue_job, ("q", {"n": 1})).start()
        for line in lines:
            seen.append(line)
            if line.startswith("data:"):
                break
    assert seen[-2:] == ["event: changed", 'data: ["q"]']


def test_a_job_page_hears_only_of_its_job(coord: JobQueueCoordinator) -> None:
    coord.create_queue("q")
    target = coord.enqueue_job("q", {"n": 0}, delay=600_000)
    promoted = threading.Event()

    def promote() -> None:
        promoted.set()
        coord.promote_job("q", target.id)

    with serving(create_app(coord, users="")) as url, httpx.Client(base_url=url, timeout=30) as http, \
            http.stream("GET", "/events", params={"queue": "q", "job": target.id}) as stream:
        lines = stream.iter_lines()
        assert next(lines) == "retry: 2000"
        threading.Timer(0.2, coord.enqueue_job, ("q", {"n": 1})).start()  # another job: not heard
        threading.Timer(1.5, promote).start()
        for line in lines:
            if line.startswith("data:"):
                assert promoted.is_set(), "told of another job's change"
                break


def test_flows_page_shows_a_flow_tree_or_says_there_are_none(coord: JobQueueCoordinator) -> None:
    coord.create_queue("reports")
    coord.create_queue("extract")
    client = _client(coord)
    if not hasattr(coord, "add_flow"):
        assert "has no flows or batches" in client.get("/flows").text
        return
    from coordinator import FlowJob  # type: ignore[attr-defined]

    node = coord.add_flow(FlowJob(queue="reports", name="monthly", data={}, children=[
        FlowJob(queue="extract", name="part", data={"part": 1}),
        FlowJob(queue="extract", name="part", data={"part": 2})]))
    page = client.get("/flows", params={"queue": "reports", "job_id": node.job.id}).text
    assert page.count('class="state waiting') >= 2 and "monthly" in page
    assert all(child.job.id[:14] in page for child in node.children)
    assert "monthly" in client.get(f"/queues/reports/jobs/{node.job.id}").text


def test_users_and_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    encoded = hash_password("s3cret", iterations=FAST)
    assert verify_password("s3cret", encoded) and not verify_password("s3cret!", encoded)
    assert not verify_password("s3cret", "md5$1$x$y")
    assert parse_users(f"a:viewer:{encoded}\nb:operator:{encoded}")["b"].can_act
    with pytest.raises(ConfigurationError, match="role of 'a'"):
        parse_users(f"a:admin:{encoded}")
    with pytest.raises(ConfigurationError, match="hash"):
        parse_users("a:viewer:plaintext")


def test_cli_refuses_off_loopback_without_users_and_hashes_passwords(monkeypatch: pytest.MonkeyPatch,
                                                                     prefix: str) -> None:
    monkeypatch.delenv("JQC_DASHBOARD_USERS", raising=False)
    monkeypatch.setenv("JQC_PREFIX", prefix)
    runner = CliRunner()
    refused = runner.invoke(main, ["dashboard", "--host", "0.0.0.0", "--port", "5999"])
    assert refused.exit_code != 0 and "JQC_DASHBOARD_USERS" in refused.output
    hashed = runner.invoke(main, ["dashboard", "--hash-password"], input="pw-123\n")
    assert hashed.exit_code == 0, hashed.output
    assert verify_password("pw-123", hashed.output.strip().splitlines()[-1])


def test_the_dashboard_command_serves_and_stops_on_sigint(prefix: str) -> None:
    port = free_port()
    env = {**os.environ, "JQC_PREFIX": prefix, "REDIS_URL": REDIS_URL}
    env.pop("JQC_DASHBOARD_USERS", None)
    proc = subprocess.Popen([sys.executable, "-m", "coordinator.cli", "dashboard", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/queues", timeout=5)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
                time.sleep(0.2)
        assert page.status_code == 200 and "Queues" in page.text
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert f"dashboard on http://127.0.0.1:{port}/ (loopback clients only, no login)" in out


@pytest.fixture(autouse=True)
def _no_env_users(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("JQC_DASHBOARD_USERS", raising=False)
    yield
