"""The dashboard in a real browser (Debian's Chromium via Playwright) over a real managed worker.

One coordinator, one `celery worker` and one uvicorn serve the module's tests; each test tells
its jobs apart by name. A job whose data names a file that does not exist fails for good
(`tests/dashboard_processors.work`), so a test makes failures and then, by creating the file,
lets a retry succeed.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from coordinator import JobQueueCoordinator, JobState
from coordinator.dashboard import create_app
from coordinator.demo.cleanup import delete_prefix_keys
from tests import dashboard_processors
from tests.support.dashboard import browser_page, chromium_or_skip, serving
from tests.support.env import FAST_SWEEPS, REDIS_URL

QUEUE = "dash"
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "img" / "dashboard.png"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    chromium_or_skip()
    prefix = f"t{uuid.uuid4().hex[:10]}"
    coord = JobQueueCoordinator(REDIS_URL, prefix=prefix, **FAST_SWEEPS)
    try:
        coord.create_queue(QUEUE)
        coord.register_worker(QUEUE, dashboard_processors.work, pool="solo")
        with serving(create_app(coord, users="")) as url:
            yield {"coord": coord, "url": url, "tmp": tmp_path_factory.mktemp("dash")}
    finally:
        coord.shutdown(timeout=10)
        client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
        delete_prefix_keys(client, prefix)
        client.close()


def _count(page: Any, state: str) -> int:
    return int(page.locator(f"[data-count={state}] b").inner_text())


def _wait_final(coord: JobQueueCoordinator, ids: list[str]) -> list[Any]:
    return [coord.wait_for_job(QUEUE, job_id, timeout=60) for job_id in ids]


def test_counts_change_live_as_the_worker_runs_jobs(env: dict[str, Any], tmp_path: Path) -> None:
    from playwright.sync_api import expect

    coord: JobQueueCoordinator = env["coord"]
    before = coord.get_queue_status(QUEUE).counts
    missing = str(tmp_path / "never-created")
    with browser_page(env["url"]) as page:
        page.goto(f"/queues/{QUEUE}")
        expect(page.locator("#live")).to_have_class(re.compile(r"\bon\b"))
        page.evaluate("window.__sameDocument = true")
        coord.pause_queue(QUEUE)
        jobs = [coord.enqueue_job(QUEUE, {"seconds": 0.1, "n": i}, name="count") for i in range(10)]
        jobs += [coord.enqueue_job(QUEUE, {"needs": missing, "n": i}, name="count") for i in range(2)]
        expect(page.locator("[data-count=waiting] b")).to_have_text(str(before.waiting + 12))
        coord.resume_queue(QUEUE)
        expect(page.locator("[data-count=completed] b")).to_have_text(str(before.completed + 10), timeout=60_000)
        expect(page.locator("[data-count=failed] b")).to_have_text(str(before.failed + 2))
        expect(page.locator("[data-count=waiting] b")).to_have_text(str(before.waiting))
        assert page.evaluate("window.__sameDocument") is True, "the page reloaded"
        assert {job.state for job in _wait_final(coord, [j.id for j in jobs])} == {JobState.COMPLETED, JobState.FAILED}
        # the charts draw the per-minute metrics these jobs just wrote
        page.reload()
        expect(page.locator(".chart .uplot")).to_have_count(2)
        shot = SCREENSHOT if os.environ.get("JQC_UPDATE_SCREENSHOT") == "1" else tmp_path / "dashboard.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_retry_a_failed_job_with_its_button(env: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    coord: JobQueueCoordinator = env["coord"]
    needed = env["tmp"] / f"retry-{uuid.uuid4().hex[:6]}"
    job = coord.enqueue_job(QUEUE, {"needs": str(needed)}, name="retry-me")
    assert coord.wait_for_job(QUEUE, job.id, timeout=60).state is JobState.FAILED
    with browser_page(env["url"]) as page:
        page.goto(f"/queues/{QUEUE}/jobs?state=failed&name=retry-me")
        page.locator(f"tr[data-job='{job.id}'] a").click()
        expect(page.locator("#job-state")).to_have_text("failed")
        expect(page.locator("#job-error")).to_contain_text("missing")
        needed.write_text("now it exists")
        page.locator("#retry").click()
        expect(page.locator("#flash")).to_contain_text("retried")
        expect(page.locator("#job-state")).to_have_text("completed", timeout=60_000)
        expect(page.locator(".timeline")).to_contain_text("completed")
    done = coord.get_job(QUEUE, job.id)
    assert done is not None and done.state is JobState.COMPLETED
    moves = [e.event for e in coord.events(QUEUE) if e.job_id == job.id]
    assert moves.index("failed") < moves.index("completed"), moves


def test_bulk_retry_of_a_filter_counts_first_then_retries_only_those(env: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    coord: JobQueueCoordinator = env["coord"]
    needed = env["tmp"] / f"bulk-{uuid.uuid4().hex[:6]}"
    bad = [coord.enqueue_job(QUEUE, {"needs": str(needed), "i": i}, name="bulk-bad") for i in range(3)]
    other = coord.enqueue_job(QUEUE, {"needs": str(needed)}, name="bulk-other")
    assert {j.state for j in _wait_final(coord, [j.id for j in [*bad, other]])} == {JobState.FAILED}
    with browser_page(env["url"]) as page:
        page.goto(f"/queues/{QUEUE}/jobs?state=failed")
        form = page.locator("section.bulk form")
        form.locator("select[name=action]").select_option("retry")
        form.locator("select[name=state]").select_option("failed")
        form.locator("input[name=name]").fill("bulk-bad")
        page.locator("#bulk-preview").click()
        expect(page.locator("[data-bulk-count]")).to_have_text("3")
        needed.write_text("ok")
        page.locator("#bulk-run").click()
        expect(page.locator("#flash")).to_contain_text("retry: 3 of 3 jobs")
    assert {j.state for j in _wait_final(coord, [j.id for j in bad])} == {JobState.COMPLETED}
    still = coord.get_job(QUEUE, other.id)
    assert still is not None and still.state is JobState.FAILED


def test_a_script_in_a_payload_is_shown_as_text_and_never_runs(env: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    coord: JobQueueCoordinator = env["coord"]
    payload = ('<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
               '<svg onload="window.__pwned = 3"></svg>')
    job = coord.enqueue_job(QUEUE, {"comment": payload}, name=f"xss-{uuid.uuid4().hex[:4]}<b>bold</b>")
    coord.wait_for_job(QUEUE, job.id, timeout=60)
    with browser_page(env["url"]) as page:
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(f"/queues/{QUEUE}/jobs/{job.id}")
        expect(page.locator("#job-data")).to_contain_text(json.dumps(payload))  # the JSON text, as typed
        page.wait_for_timeout(300)  # an onerror handler would have fired by now
        assert page.evaluate("typeof window.__pwned") == "undefined"
        assert page.locator("#job-data script, #job-data img, #job-data svg").count() == 0
        page.goto(f"/queues/{QUEUE}/jobs?state=completed&text=__pwned")
        expect(page.locator(f"tr[data-job='{job.id}']")).to_contain_text("<b>bold</b>")
        page.wait_for_timeout(300)  # an onerror handler would have fired by now
        assert page.evaluate("typeof window.__pwned") == "undefined"
        assert page.locator("td script, td img, td svg").count() == 0
        assert dialogs == []


def test_workers_page_pauses_and_resumes_a_managed_worker(env: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    coord: JobQueueCoordinator = env["coord"]
    worker = coord.get_workers_by_queue(QUEUE)[0]
    try:
        with browser_page(env["url"]) as page:
            page.goto("/workers")
            row = page.locator(f"tr[data-worker='{worker.id}']")
            expect(row).to_contain_text(str(worker.pid))
            expect(row).to_contain_text("MiB")  # the worker's RSS
            row.get_by_role("button", name="Pause").click()
            expect(page.locator("#flash")).to_contain_text("paused")
            expect(row.locator(".state")).to_have_text("paused")
            assert coord.get_worker(worker.id).state.value == "paused"
            row.get_by_role("button", name="Resume").click()
            expect(row.locator(".state")).to_have_text("running")
    finally:
        coord.resume_worker(worker.id)
    assert coord.get_worker(worker.id).state.value == "running"


def test_recurring_page_lists_next_run_and_removes(env: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    coord: JobQueueCoordinator = env["coord"]
    coord.schedule_recurring_job(QUEUE, "nightly", {}, cron="0 3 * * *", key="nightly-report")
    with browser_page(env["url"]) as page:
        page.goto("/recurring")
        row = page.locator("tr[data-key='nightly-report']")
        expect(row).to_contain_text("0 3 * * *")
        expect(row).to_contain_text("03:00:00")  # the next run
        page.on("dialog", lambda dialog: dialog.accept())  # hx-confirm
        row.get_by_role("button", name="Remove").click()
        expect(page.locator("#flash")).to_contain_text("removed")
        expect(row).to_have_count(0)
    assert [r.key for r in coord.get_recurring_jobs(QUEUE)] == []


def test_scale_a_pool_from_the_queue_page(env: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    coord: JobQueueCoordinator = env["coord"]
    try:
        with browser_page(env["url"]) as page:
            page.goto(f"/queues/{QUEUE}")
            form = page.locator("form[hx-post$='/scale']")
            form.locator("input[name=count]").fill("2")
            form.get_by_role("button", name="Scale").click()
            expect(page.locator("#flash")).to_contain_text("1 -> 2 workers", timeout=90_000)
            assert len(coord.get_workers_by_queue(QUEUE)) == 2
            form.locator("input[name=count]").fill("1")
            form.get_by_role("button", name="Scale").click()
            expect(page.locator("#flash")).to_contain_text("2 -> 1 workers", timeout=90_000)
    finally:
        coord.scale_workers(QUEUE, 1)
    assert len(coord.get_workers_by_queue(QUEUE)) == 1
