"""Actions: each POST calls one public method of the coordinator and answers with a message
fragment; ``HX-Trigger: jqc-refresh`` makes the page re-read what it shows.

Answers: 200 done, 409 the job's state does not allow it, 400 bad input (the message names the
field), 404 unknown queue, job or worker. The guard has already checked role and CSRF.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from coordinator.dashboard import readmodel
from coordinator.dashboard.pages import job_filter
from coordinator.errors import (
    CoordinatorError,
    JobNotFoundError,
    QueueNotFoundError,
    WorkerNotFoundError,
)
from coordinator.models import RateLimit, Retention

if TYPE_CHECKING:
    from coordinator.dashboard.app import Dashboard

REFRESH = {"HX-Trigger": "jqc-refresh"}
#: Bulk actions and the job method each one calls.
BULK_ACTIONS = {"retry": "retry_job", "remove": "remove_job", "cancel": "cancel_job", "promote": "promote_job"}


def _optional_int(form: Mapping[str, Any], name: str) -> int | None:
    raw = str(form.get(name) or "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise CoordinatorError(f"{name}: a whole number, not {raw!r}") from None


def _int(form: Mapping[str, Any], name: str) -> int:
    value = _optional_int(form, name)
    if value is None:
        raise CoordinatorError(f"{name}: required")
    return value


def routes(dash: Dashboard) -> list[Route]:
    coord = dash.coord

    def message(request: Request, text: str, status_code: int = 200) -> Response:
        return dash.render(request, "_flash.html", status_code=status_code, headers=REFRESH,
                           text=text, ok=status_code == 200)

    def job_action(verb: str, call: Callable[[str, str, Mapping[str, Any]], bool]) -> Callable[..., Any]:
        async def handler(request: Request) -> Response:
            queue, job_id = request.path_params["queue"], request.path_params["job_id"]
            form = await request.form()
            done = await run_in_threadpool(call, queue, job_id, form)
            if done:
                return message(request, f"Job {job_id}: {verb}.")
            job = await run_in_threadpool(coord.get_job, queue, job_id)
            state = job.state.value if job else "gone"
            return message(request, f"Job {job_id} is {state}: it cannot be {verb}.", 409)
        return handler

    def queue_action(call: Callable[[str, Mapping[str, Any]], str]) -> Callable[..., Any]:
        async def handler(request: Request) -> Response:
            form = await request.form()
            text = await run_in_threadpool(call, request.path_params["queue"], form)
            return message(request, text)
        return handler

    def set_limiter(queue: str, form: Mapping[str, Any]) -> str:
        info = coord.get_queue(queue)
        if form.get("remove"):
            coord.create_queue(info.config.model_copy(update={"limiter": None}))
            return f"Queue {queue}: rate limit removed."
        limiter = RateLimit(max=_int(form, "max"), duration=_int(form, "duration"))
        coord.create_queue(info.config.model_copy(update={"limiter": limiter}))
        return f"Queue {queue}: at most {limiter.max} jobs start per {limiter.duration} ms."

    def set_retention(queue: str, form: Mapping[str, Any]) -> str:
        info = coord.get_queue(queue)
        retention = Retention.model_validate({name: _optional_int(form, name) for name in
                                              ("completed_count", "completed_age_s", "failed_count", "failed_age_s")})
        coord.create_queue(info.config.model_copy(update={"retention": retention}))
        return f"Queue {queue}: retention saved."

    def pause(queue: str, form: Mapping[str, Any]) -> str:
        coord.pause_queue(queue)
        return f"Queue {queue} paused: no new job starts."

    def resume(queue: str, form: Mapping[str, Any]) -> str:
        coord.resume_queue(queue)
        return f"Queue {queue} resumed."

    def scale(queue: str, form: Mapping[str, Any]) -> str:
        result = coord.scale_workers(queue, _int(form, "count"))
        return f"Queue {queue}: {result.previous} -> {result.current} workers."

    def bulk(queue: str, form: Mapping[str, Any]) -> str:
        action = str(form.get("action") or "")
        if action not in BULK_ACTIONS:
            raise CoordinatorError(f"action: one of {', '.join(BULK_ACTIONS)}, not {action!r}")
        selection = readmodel.select(coord, queue, job_filter(form))
        call = getattr(coord, BULK_ACTIONS[action])
        done = refused = 0
        for job_id in selection.ids:
            try:
                ok = call(queue, job_id)
            except JobNotFoundError:
                ok = False
            done, refused = (done + 1, refused) if ok else (done, refused + 1)
        expected = _optional_int(form, "expected")
        drift = f" (the preview counted {expected})" if expected is not None and expected != len(selection.ids) else ""
        tail = f"; {refused} had moved on and were left alone" if refused else ""
        return f"{action}: {done} of {len(selection.ids)} jobs{drift}{tail}."

    async def worker_action(request: Request) -> Response:
        worker_id, verb = request.path_params["worker_id"], request.path_params["verb"]
        if verb not in ("pause", "resume"):
            return message(request, f"verb: pause or resume, not {verb!r}", 400)
        await run_in_threadpool(getattr(coord, f"{verb}_worker"), worker_id)
        return message(request, f"Worker {worker_id}: {verb}d.")

    async def recurring_action(request: Request) -> Response:
        queue, key, verb = (request.path_params[name] for name in ("queue", "key", "verb"))
        if verb == "remove":
            removed = await run_in_threadpool(coord.remove_recurring_job, queue, key)
            return message(request, f"Recurring job {key}: removed." if removed else
                           f"Recurring job {key}: not found.", 200 if removed else 404)
        method = getattr(coord, f"{verb}_recurring_job", None) if verb in ("pause", "resume") else None
        if method is None:
            return message(request, f"verb: remove, pause or resume (where supported), not {verb!r}", 400)
        done = await run_in_threadpool(method, queue, key)
        return message(request, f"Recurring job {key}: {verb}d." if done else
                       f"Recurring job {key}: not found.", 200 if done else 404)

    return [
        Route("/queues/{queue}/jobs/{job_id}/retry", job_action(
            "retried", lambda q, j, f: coord.retry_job(q, j)), methods=["POST"]),
        Route("/queues/{queue}/jobs/{job_id}/cancel", job_action(
            "cancelled", lambda q, j, f: coord.cancel_job(q, j, terminate=bool(f.get("terminate")))),
            methods=["POST"]),
        Route("/queues/{queue}/jobs/{job_id}/promote", job_action(
            "promoted", lambda q, j, f: coord.promote_job(q, j)), methods=["POST"]),
        Route("/queues/{queue}/jobs/{job_id}/priority", job_action(
            "re-prioritised", lambda q, j, f: coord.update_job_priority(q, j, _int(f, "priority"))),
            methods=["POST"]),
        Route("/queues/{queue}/jobs/{job_id}/remove", job_action(
            "removed", lambda q, j, f: coord.remove_job(q, j)), methods=["POST"]),
        Route("/queues/{queue}/pause", queue_action(pause), methods=["POST"]),
        Route("/queues/{queue}/resume", queue_action(resume), methods=["POST"]),
        Route("/queues/{queue}/limiter", queue_action(set_limiter), methods=["POST"]),
        Route("/queues/{queue}/retention", queue_action(set_retention), methods=["POST"]),
        Route("/queues/{queue}/scale", queue_action(scale), methods=["POST"]),
        Route("/queues/{queue}/bulk", queue_action(bulk), methods=["POST"]),
        Route("/workers/{worker_id}/{verb}", worker_action, methods=["POST"]),
        Route("/recurring/{queue}/{key}/{verb}", recurring_action, methods=["POST"]),
    ]


def exception_handlers(dash: Dashboard) -> dict[Any, Callable[..., Any]]:
    """Coordinator and validation errors as a message fragment with 404 or 400."""

    async def coordinator_error(request: Request, exc: Exception) -> Response:
        not_found = isinstance(exc, (JobNotFoundError, QueueNotFoundError, WorkerNotFoundError))
        return dash.render(request, "_flash.html", status_code=404 if not_found else 400,
                           text=str(exc), ok=False, live_queue=None)

    async def bad_input(request: Request, exc: Exception) -> Response:
        if isinstance(exc, ValidationError):
            text = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        else:
            text = str(exc)
        return dash.render(request, "_flash.html", status_code=400, text=text, ok=False, live_queue=None)

    return {CoordinatorError: coordinator_error, ValueError: bad_input}
