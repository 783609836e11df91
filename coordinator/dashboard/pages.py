"""Read-only pages and the fragments htmx re-reads when the events stream says something changed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from coordinator.dashboard import readmodel
from coordinator.dashboard.readmodel import JobFilter
from coordinator.dispatch import parse_task_id
from coordinator.errors import CoordinatorError
from coordinator.models import JobState

if TYPE_CHECKING:
    from coordinator.dashboard.app import Dashboard

STATES = [state.value for state in JobState]
PAGE_SIZE = 25


def when(moment: datetime | None) -> str:
    """A UTC time as ``YYYY-MM-DD HH:MM:SS``, or an empty string."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def human_bytes(value: int | None) -> str:
    if value is None:
        return ""
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(value)


def job_filter(params: Any) -> JobFilter:
    """A `JobFilter` from query or form fields (state, name, group, text, older_than_min)."""
    older = str(params.get("older_than_min") or "0").strip()
    if not older.isdigit():
        raise CoordinatorError(f"older_than_min: a whole number of minutes, not {older!r}")
    return JobFilter(
        state=JobState(params.get("state") or "waiting"), name=(params.get("name") or "").strip(),
        group=(params.get("group") or "").strip(), text=(params.get("text") or "").strip(),
        older_than_min=int(older),
    )


def routes(dash: Dashboard) -> list[Route]:
    coord = dash.coord

    def queue_rows() -> list[Any]:
        return [coord.get_queue_status(name) for name in sorted(coord.get_queue_names())]

    async def index(request: Request) -> Response:
        return RedirectResponse(f"{request.scope.get('root_path', '')}/queues", status_code=303)

    async def queues(request: Request) -> Response:
        rows = await run_in_threadpool(queue_rows)
        return dash.render(request, "_queues_table.html" if _fragment(request) else "queues.html", queues=rows,
                           live_queue=None)

    def queue_context(name: str) -> dict[str, Any]:
        return {"info": coord.get_queue(name), "status": coord.get_queue_status(name),
                "workers": coord.get_workers_by_queue(name), "live_queue": name, "queue": name}

    async def queue(request: Request) -> Response:
        context = await run_in_threadpool(queue_context, request.path_params["queue"])
        return dash.render(request, "queue.html", states=STATES, **context)

    async def queue_counts(request: Request) -> Response:
        name = request.path_params["queue"]
        status = await run_in_threadpool(coord.get_queue_status, name)
        return dash.render(request, "_counts.html", status=status, queue=name, states=STATES)

    async def metrics(request: Request) -> Response:
        name = request.path_params["queue"]
        minutes = min(24 * 60, max(5, int(request.query_params.get("minutes", "60") or 60)))
        points = await run_in_threadpool(coord.get_metrics, name, minutes)
        return JSONResponse({
            "t": [int(p.minute.timestamp()) for p in points],
            "throughput": [p.completed + p.failed for p in points],
            "failed": [p.failed for p in points],
            "error_rate": [round(p.failed / (p.completed + p.failed), 4) if p.completed + p.failed else 0
                           for p in points],
        })

    async def jobs(request: Request) -> Response:
        name = request.path_params["queue"]
        flt = job_filter(request.query_params)
        page = max(0, int(request.query_params.get("page", "0") or 0))
        result = await run_in_threadpool(readmodel.job_page, coord, name, flt, page, PAGE_SIZE)
        template = "_job_rows.html" if _fragment(request) else "jobs.html"
        return dash.render(request, template, queue=name, flt=flt, result=result, states=STATES,
                           live_queue=name, query=_query(flt))

    def job_context(name: str, job_id: str) -> dict[str, Any]:
        job = coord.get_job(name, job_id)
        if job is None:
            return {"job": None, "queue": name, "job_id": job_id, "live_queue": name, "live_job": job_id}
        return {"job": job, "queue": name, "job_id": job_id, "events": readmodel.timeline(coord, job),
                "shown": readmodel.shown, "group": readmodel.job_group(job), "live_queue": name, "live_job": job_id,
                "flow": _flow(coord, name, job_id)}

    async def job(request: Request) -> Response:
        context = await run_in_threadpool(job_context, request.path_params["queue"], request.path_params["job_id"])
        template = "_job_detail.html" if _fragment(request) else "job.html"
        return dash.render(request, template, status_code=200 if context["job"] else 404, **context)

    async def bulk_preview(request: Request) -> Response:
        name = request.path_params["queue"]
        flt = job_filter(request.query_params)
        action = request.query_params.get("action", "retry")
        selection = await run_in_threadpool(readmodel.select, coord, name, flt)
        return dash.render(request, "_bulk_confirm.html", queue=name, flt=flt, action=action,
                           selection=selection)

    def workers_context() -> dict[str, Any]:
        managed = coord.get_all_worker_status()
        return {"managed": sorted(managed, key=lambda w: (w.queue, w.id)),
                "live": readmodel.all_live_workers(coord), "queue_names": sorted(coord.get_queue_names())}

    async def workers(request: Request) -> Response:
        context = await run_in_threadpool(workers_context)
        template = "_workers.html" if _fragment(request) else "workers.html"
        return dash.render(request, template, live_queue=None, **context)

    async def recurring(request: Request) -> Response:
        entries = await run_in_threadpool(coord.get_recurring_jobs)
        template = "_recurring.html" if _fragment(request) else "recurring.html"
        return dash.render(request, template, entries=entries, live_queue=None,
                           can_pause=hasattr(coord, "pause_recurring_job"))

    async def flows(request: Request) -> Response:
        name = request.query_params.get("queue", "")
        job_id = request.query_params.get("job_id", "")
        batch_id = request.query_params.get("batch_id", "").strip()
        tree = await run_in_threadpool(_flow, coord, name, job_id) if name and job_id else None
        batch = await run_in_threadpool(_batch, coord, batch_id) if batch_id else None
        names = await run_in_threadpool(coord.get_queue_names)
        return dash.render(request, "flows.html", supported=hasattr(coord, "get_flow"),
                           batches=hasattr(coord, "get_batch"), queue=name, job_id=job_id, tree=tree,
                           batch_id=batch_id, batch=batch, queue_names=sorted(names), live_queue=None)

    async def find(request: Request) -> Response:
        """Flower -> dashboard: a Celery task id (``<job id>.<token>`` or an adopted task's id)."""
        task_id = request.query_params.get("id", "").strip()
        found = await run_in_threadpool(_find_job, coord, task_id)
        base = request.scope.get("root_path", "")
        if found is None:
            return dash.render(request, "not_found.html", status_code=404, what=f"job of task {task_id!r}",
                               live_queue=None)
        return RedirectResponse(f"{base}/queues/{found[0]}/jobs/{found[1]}", status_code=303)

    async def events(request: Request) -> Response:
        params = request.query_params
        return StreamingResponse(dash.live.stream(params.get("queue") or None, params.get("job") or None),
                                 media_type="text/event-stream",
                                 headers={"cache-control": "no-store", "x-accel-buffering": "no"})

    return [
        Route("/", index),
        Route("/queues", queues),
        Route("/fragments/queues", fragment(queues)),
        Route("/queues/{queue}", queue),
        Route("/queues/{queue}/counts", queue_counts),
        Route("/queues/{queue}/metrics.json", metrics),
        Route("/queues/{queue}/jobs", jobs),
        Route("/queues/{queue}/jobs/{job_id}", job),
        Route("/queues/{queue}/bulk", bulk_preview),
        Route("/workers", workers),
        Route("/recurring", recurring),
        Route("/flows", flows),
        Route("/find", find),
        Route("/events", events),
        # fragments: the same handlers, told to render only the part htmx swaps
        Route("/fragments/queues/{queue}/jobs", fragment(jobs)),
        Route("/fragments/queues/{queue}/jobs/{job_id}", fragment(job)),
        Route("/fragments/workers", fragment(workers)),
        Route("/fragments/recurring", fragment(recurring)),
    ]


def fragment(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """The same page handler, rendering only the part htmx swaps."""

    async def only_fragment(request: Request) -> Response:
        request.state.fragment = True
        return await handler(request)

    return only_fragment


def _fragment(request: Request) -> bool:
    return bool(getattr(request.state, "fragment", False))


def _query(flt: JobFilter) -> str:
    from urllib.parse import urlencode

    return urlencode({k: v for k, v in (("state", flt.state.value), ("name", flt.name), ("group", flt.group),
                                         ("text", flt.text)) if v})


def _find_job(coord: Any, task: str) -> tuple[str, str] | None:
    if not task:
        return None
    dispatch = parse_task_id(task)
    candidates = [dispatch.job_id, task] if dispatch else [task]
    for name in coord.get_queue_names():
        for job_id in candidates:
            if coord.get_job(name, job_id) is not None:
                return name, job_id
    return None


def _flow(coord: Any, queue: str, job_id: str) -> Any:
    """The job's flow tree when the coordinator has flows (`get_flow`), else None."""
    get_flow = getattr(coord, "get_flow", None)
    if get_flow is None:
        return None
    try:
        return get_flow(queue, job_id)
    except CoordinatorError:
        return None


def _batch(coord: Any, batch_id: str) -> dict[str, Any] | None:
    """A batch's status as a dict when the coordinator has batches (`get_batch`), else None."""
    get_batch = getattr(coord, "get_batch", None)
    if get_batch is None:
        return None
    try:
        status = get_batch(batch_id)
    except CoordinatorError:
        return None
    return status.model_dump(mode="json") if hasattr(status, "model_dump") else None
