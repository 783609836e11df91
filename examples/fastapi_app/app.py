"""A FastAPI service that enqueues crawl jobs and awaits their results through the async client.

    uvicorn fastapi_app.app:app --port 8001

`POST /crawl` enqueues and answers at once (202 with the job); `POST /crawl/wait?timeout=10`
answers with the finished job, woken by its events, without holding the event loop;
`GET /jobs/{id}` reads a job, `GET /stats` the queue's counts. The async processor runs in `fastapi_app.worker`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from coordinator import AsyncJobQueueCoordinator, CoordinatorError, Job, JobState
from fastapi_app.worker import QUEUE

acoord = AsyncJobQueueCoordinator.from_env()


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    await acoord.create_queue(QUEUE)
    yield
    await acoord.close()


app = FastAPI(title="crawler", lifespan=lifespan)


class CrawlRequest(BaseModel):
    url: str
    latency_s: float = 0.05


@app.post("/crawl", status_code=202)
async def crawl(request: CrawlRequest) -> Job:
    """Enqueue a crawl and answer at once with the waiting job."""
    try:
        return await acoord.enqueue_job(QUEUE, request.model_dump())
    except CoordinatorError as exc:
        raise HTTPException(422, str(exc)) from None


@app.post("/crawl/wait")
async def crawl_and_wait(request: CrawlRequest, timeout: float = 10) -> Job:
    """Enqueue a crawl and answer with the finished job (504 if not finished within ``timeout`` s)."""
    job = await crawl(request)
    try:
        return await acoord.wait_for_job(QUEUE, job.id, timeout=timeout)
    except TimeoutError:
        raise HTTPException(504, f"job {job.id} not finished after {timeout} s") from None


@app.get("/jobs/{job_id}")
async def get_job(job_id: str) -> Job:
    job = await acoord.get_job(QUEUE, job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id}")
    return job


@app.get("/stats")
async def stats() -> dict[str, int]:
    status = await acoord.get_queue_status(QUEUE)
    return {state.value: getattr(status.counts, state.value) for state in JobState}
