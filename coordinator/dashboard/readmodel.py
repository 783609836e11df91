"""What the pages show, read through the coordinator's public methods only (the dashboard never
writes Redis itself): filtered job pages, bulk selections, a job's timeline, the workers.

Filtering by name, group or text in the data reads the state's jobs page by page, newest first,
and stops after `SCAN_LIMIT` jobs: an unfiltered page is one range read whatever the queue's size.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from coordinator.cli import live_workers
from coordinator.models import Event, Job, JobState

if TYPE_CHECKING:
    from coordinator.facade import JobQueueCoordinator

#: Jobs read at most to answer one filtered page or one bulk selection.
SCAN_LIMIT = 10_000
#: Jobs per `get_jobs` call while scanning.
CHUNK = 500
#: Characters of a job's data, result or stack trace shown before "… (truncated)".
SHOW_CHARS = 20_000
#: Events read at most for one job's timeline.
TIMELINE_SCAN = 10_000


@dataclass(frozen=True)
class JobFilter:
    """Which jobs of one queue and state: by name, group, text in the data, and finish age."""

    state: JobState
    name: str = ""
    group: str = ""
    text: str = ""
    older_than_min: int = 0
    """Only jobs finished (or, unfinished, created) at least this many minutes ago; 0: any."""

    @property
    def plain(self) -> bool:
        return not (self.name or self.group or self.text or self.older_than_min)

    def matches(self, job: Job, now: datetime) -> bool:
        if self.name and job.name != self.name:
            return False
        if self.group and job_group(job) != self.group:
            return False
        if self.text and self.text.lower() not in json.dumps(job.data, default=str).lower():
            return False
        if self.older_than_min:
            moment = job.finished_on or job.created_at
            if moment > now - timedelta(minutes=self.older_than_min):
                return False
        return True


@dataclass
class JobPage:
    jobs: list[Job]
    page: int
    size: int
    total: int | None
    """Jobs in the state (unfiltered), else None: a filtered total is not counted."""
    has_more: bool
    scanned: int = 0
    capped: bool = False


@dataclass
class Selection:
    """The jobs a bulk action would touch, counted before it runs."""

    ids: list[str] = field(default_factory=list)
    scanned: int = 0
    capped: bool = False


def job_group(job: Job) -> str | None:
    """The job's fairness group, when the coordinator has groups (a `JobOptions.group` field)."""
    return getattr(job.options, "group", None)


def _scan(coord: JobQueueCoordinator, queue: str, flt: JobFilter, asc: bool = False) -> Iterator[Job]:
    start = 0
    while start < SCAN_LIMIT:
        chunk = coord.get_jobs(queue, flt.state, start, start + CHUNK - 1, asc=asc)
        yield from chunk
        if len(chunk) < CHUNK:
            return
        start += CHUNK


def job_page(coord: JobQueueCoordinator, queue: str, flt: JobFilter, page: int = 0, size: int = 25) -> JobPage:
    """One page of the queue's jobs in ``flt.state`` that pass the filter, newest first."""
    if flt.plain:
        jobs = coord.get_jobs(queue, flt.state, page * size, page * size + size)
        total = getattr(coord.get_queue_status(queue).counts, flt.state.value, None)
        return JobPage(jobs[:size], page, size, total, len(jobs) > size)
    now = datetime.now(timezone.utc)
    skip, matched, scanned = page * size, [], 0
    for job in _scan(coord, queue, flt):
        scanned += 1
        if flt.matches(job, now):
            if skip:
                skip -= 1
            else:
                matched.append(job)
                if len(matched) > size:
                    break
    return JobPage(matched[:size], page, size, None, len(matched) > size, scanned, scanned >= SCAN_LIMIT)


def select(coord: JobQueueCoordinator, queue: str, flt: JobFilter) -> Selection:
    """The ids of every job (up to `SCAN_LIMIT` read) that passes the filter."""
    now = datetime.now(timezone.utc)
    selection = Selection()
    for job in _scan(coord, queue, flt):
        selection.scanned += 1
        if flt.matches(job, now):
            selection.ids.append(job.id)
    selection.capped = selection.scanned >= SCAN_LIMIT
    return selection


def timeline(coord: JobQueueCoordinator, job: Job) -> list[Event]:
    """The job's events still in the queue's stream, oldest first (read from its creation on)."""
    since = f"{max(0, int(job.created_at.timestamp() * 1000) - 1)}-0"
    events = []
    for read, event in enumerate(coord.events(job.queue, since)):
        if read >= TIMELINE_SCAN:
            break
        if event.job_id == job.id:
            events.append(event)
    return events


def shown(value: Any, limit: int = SHOW_CHARS) -> str:
    """A JSON value as indented text, cut at ``limit`` characters (the template escapes it)."""
    text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + f"\n… (truncated, {len(text):,} characters)"


def all_live_workers(coord: JobQueueCoordinator) -> list[dict[str, Any]]:
    """Workers with a fresh heartbeat on any host, whoever started them."""
    return sorted(live_workers(coord), key=lambda w: (w["queues"], w["node"]))
