"""examples/fastapi_app runs as its README says: uvicorn serving the app, the async processor in a
managed worker, results awaited through the async client."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import redis

from coordinator import Job
from coordinator.demo.cleanup import delete_prefix_keys
from tests.support.examples import EXAMPLES, example_env
from tests.support.jobs import max_overlap
from tests.support.servers import free_port
from tests.support.waiting import wait_until


@pytest.fixture
def service(prefix: str, redis_client: redis.Redis, tmp_path: Path):  # type: ignore[no-untyped-def]
    port = free_port()
    env = example_env(prefix)
    worker_log = tmp_path / "worker.log"
    with open(worker_log, "w") as out:
        worker = subprocess.Popen([sys.executable, "-m", "fastapi_app.worker"], cwd=EXAMPLES, env=env,
                                  stdout=out, stderr=subprocess.STDOUT)
    api = subprocess.Popen([sys.executable, "-m", "uvicorn", "fastapi_app.app:app", "--port", str(port)],
                           cwd=EXAMPLES, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: "consuming crawl" in worker_log.read_text(), 60, "the worker consumes")
        wait_until(lambda: _up(base), 30, "uvicorn answers")
        yield base
    finally:
        for proc in (api, worker):
            proc.send_signal(signal.SIGTERM)
        for proc in (api, worker):
            proc.wait(60)
        delete_prefix_keys(redis_client, prefix)


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/stats", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_fastapi_service_enqueues_and_awaits_results(service: str) -> None:
    done = httpx.post(f"{service}/crawl/wait", json={"url": "https://example.com/a"}, timeout=30)
    assert done.status_code == 200, done.text
    job = done.json()
    assert job["state"] == "completed" and job["result"]["url"] == "https://example.com/a"
    assert job["progress"] == 10 and job["logs"] == [f"fetched {job['result']['bytes']} bytes"]

    async def many() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=service, timeout=60) as client:
            return await asyncio.gather(*(client.post("/crawl/wait", json={"url": f"https://example.com/{i}",
                                                                          "latency_s": 0.5})
                                          for i in range(40)))

    answers = asyncio.run(many())
    assert [r.status_code for r in answers] == [200] * 40
    assert sorted(r.json()["result"]["url"] for r in answers) == sorted(f"https://example.com/{i}" for i in range(40))
    # 40 jobs of 0.5 s each ran side by side on the one worker process's event loop
    jobs = [Job.model_validate(r.json()) for r in answers]
    assert len({j.worker_id for j in jobs}) == 1
    assert max_overlap(jobs) >= 10

    queued = httpx.post(f"{service}/crawl", json={"url": "ftp://nope"}, timeout=10)
    assert queued.status_code == 202 and queued.json()["state"] == "waiting"
    job_id = queued.json()["id"]
    failed = wait_until(lambda: (j := httpx.get(f"{service}/jobs/{job_id}").json())["state"] == "failed" and j,
                        30, "the bad url fails")
    assert failed["attempts_made"] == 1 and "is not http(s)" in failed["failed_reason"]
    assert httpx.post(f"{service}/crawl", json={"link": "x"}).status_code == 422
    assert httpx.get(f"{service}/jobs/unknown").status_code == 404
    assert httpx.get(f"{service}/stats").json()["completed"] == 41
