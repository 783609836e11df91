"""The examples run as their README says: the photo app's API and workers, and the adopted Celery app."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import redis

from coordinator.demo.cleanup import delete_prefix_keys
from coordinator.demo.images import make_corrupt_upload, make_photo
from coordinator.redis_server import free_port
from tests.support.examples import EXAMPLES, example_env
from tests.support.processes import wait_until_gone
from tests.support.waiting import wait_until


def http(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_adopted_celery_app_runs_its_own_tasks(prefix: str, redis_client: redis.Redis) -> None:
    try:
        proc = subprocess.run([sys.executable, "-m", "adopt_celery.run"], cwd=EXAMPLES, env=example_env(prefix),
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "receipt: {'order': 42, 'to': 'ada@example.com', 'sent': True}" in proc.stdout
        assert "invoice: invoice-42.pdf" in proc.stdout
        assert "total: 15.0" in proc.stdout
        assert "reminder: delayed" in proc.stdout  # an hour's countdown waits in the registry
        assert "invoice attempts: 2" in proc.stdout  # autoretry_for ran it again as the job's retry
        assert not wait_until_gone(prefix)
    finally:
        delete_prefix_keys(redis_client, prefix)


def test_photo_app_api_enqueues_and_its_workers_process(prefix: str, redis_client: redis.Redis,
                                                        tmp_path: Path) -> None:
    port = free_port()
    env = example_env(prefix, PHOTO_STORAGE_DIR=str(tmp_path), WORKER_AUTOSCALE="2,1", API_PORT=str(port),
                      CLEANUP_EVERY_MS="60000")
    worker_log = tmp_path / "worker.log"
    with open(worker_log, "w") as out:
        workers = subprocess.Popen([sys.executable, "-m", "photo_app.worker"], cwd=EXAMPLES, env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    api = subprocess.Popen([sys.executable, "-m", "photo_app.api"], cwd=EXAMPLES, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: worker_log.read_text().count("consuming") == 3, 120, "three worker pools consume")
        photo = make_photo(tmp_path / "uploads" / "IMG_7.jpg", seed=7, size=(800, 600))
        broken = make_corrupt_upload(tmp_path / "uploads")

        def post(path: Path) -> dict[str, Any]:
            def attempt() -> dict[str, Any] | None:
                try:
                    status, body = http("POST", f"{base}/photos", {"path": str(path), "premium": True})
                except OSError:  # the API is not listening yet
                    return None
                assert status == 202, body
                return body
            return wait_until(attempt, 30, "the API accepts an upload")

        def finished(queue: str, job_id: str) -> dict[str, Any]:
            def attempt() -> dict[str, Any] | None:
                status, job = http("GET", f"{base}/jobs/{queue}/{job_id}")
                assert status == 200, job
                return job if job["state"] in ("completed", "failed") else None
            return wait_until(attempt, 60, f"{queue} job {job_id} finishes")

        accepted = post(photo)
        thumbs = finished("thumbnails", accepted["thumbnails"]["id"])
        assert thumbs["state"] == "completed"
        assert [Path(p).name for p in thumbs["result"]["thumbnails"]] == ["IMG_7-128.jpg", "IMG_7-512.jpg"]
        assert all(Path(p).is_file() for p in thumbs["result"]["thumbnails"])
        meta = finished("metadata", accepted["metadata"]["id"])
        assert meta["state"] == "completed" and meta["result"]["size"] == [800, 600]
        assert meta["result"]["camera"] and len(meta["result"]["sha256"]) == 64

        poison = finished("thumbnails", post(broken)["thumbnails"]["id"])
        assert poison["state"] == "failed" and poison["attempts_made"] == 1
        assert "not an image" in poison["failed_reason"]

        status, health = http("GET", f"{base}/health")
        assert status in (200, 503) and health["status"] in ("healthy", "degraded", "unhealthy")
        assert http("GET", f"{base}/jobs/thumbnails/no-such-job")[0] == 404
    finally:
        workers.send_signal(signal.SIGTERM)
        api.send_signal(signal.SIGINT)
        try:
            assert workers.wait(90) == 0, worker_log.read_text()
            api.wait(30)
        finally:
            for proc in (workers, api):
                if proc.poll() is None:
                    proc.kill()
            delete_prefix_keys(redis_client, prefix)
    assert "stopping: running jobs finish first" in worker_log.read_text()
    assert not wait_until_gone(prefix)
