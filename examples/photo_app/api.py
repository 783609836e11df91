"""The API side: takes uploads and enqueues their jobs; reports job states and health.

    POST /photos        {"path": "/data/photos/uploads/x.jpg", "premium": true}
                        -> 202 {"thumbnails": <job>, "metadata": <job>}
    GET  /jobs/<queue>/<job id>  -> the job (state, progress, result, failed reason)
    GET  /health        -> the coordinator's health; 503 when unhealthy

Run: python -m photo_app.api   (API_HOST / API_PORT, default 127.0.0.1:8000)
"""

from __future__ import annotations

import json
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from coordinator import CoordinatorError, HealthStatus, Job

from photo_app.jobs import METADATA, THUMBNAILS, config, coord, setup

PREMIUM, STANDARD = 1, 5


def submit_photo(path: Path, premium: bool = False, trace_id: str | None = None) -> dict[str, Job]:
    """Enqueue the work for one uploaded photo; premium users' photos go first."""
    priority = PREMIUM if premium else STANDARD
    data = {"path": str(path)}
    return {
        "thumbnails": coord.enqueue_job(THUMBNAILS, data, name="thumbnail", priority=priority, trace_id=trace_id),
        "metadata": coord.enqueue_job(METADATA, data, name="metadata", priority=priority, trace_id=trace_id),
    }


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        if self.path != "/photos":
            return self._send(HTTPStatus.NOT_FOUND, {"error": "not found"})
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            path = Path(body["path"])
        except (ValueError, KeyError, TypeError):
            return self._send(HTTPStatus.BAD_REQUEST, {"error": 'send {"path": ...}'})
        if not path.is_file():
            return self._send(HTTPStatus.BAD_REQUEST, {"error": f"no such upload: {path}"})
        jobs = submit_photo(path, premium=bool(body.get("premium")))
        self._send(HTTPStatus.ACCEPTED, {queue: _job_json(job) for queue, job in jobs.items()})

    def do_GET(self) -> None:  # noqa: N802
        parts = self.path.strip("/").split("/")
        if parts == ["health"]:
            health = coord.get_health()
            code = HTTPStatus.SERVICE_UNAVAILABLE if health.status is HealthStatus.UNHEALTHY else HTTPStatus.OK
            return self._send(code, health.model_dump(mode="json"))
        if len(parts) == 3 and parts[0] == "jobs":
            try:
                job = coord.get_job(parts[1], parts[2])
            except CoordinatorError as exc:
                return self._send(HTTPStatus.NOT_FOUND, {"error": str(exc)})
            if job is None:
                return self._send(HTTPStatus.NOT_FOUND, {"error": "no such job"})
            return self._send(HTTPStatus.OK, _job_json(job))
        self._send(HTTPStatus.NOT_FOUND, {"error": "not found"})

    def _send(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's name)
        pass


def _job_json(job: Job) -> dict[str, Any]:
    return job.model_dump(mode="json", include={"id", "queue", "name", "state", "progress", "result",
                                                "failed_reason", "attempts_made", "trace_id"})


def main() -> None:
    setup()
    server = ThreadingHTTPServer((config.api_host, config.api_port), Handler)
    print(f"photo API on http://{config.api_host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
