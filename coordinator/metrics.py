"""The owner of each queue's metrics hash (`QueueKeys.metrics`): its field names, what is counted
and how it is read back.

Fields, per minute (``<minute>`` = minutes since the epoch):

    <minute>:c   jobs completed in that minute
    <minute>:f   jobs failed for good in that minute (retries excluded; stalled too often, poison)
    <minute>:t   processing time (ms) of the jobs that finished in that minute

and since the queue began:

    all:c, all:f, all:t         the same totals (the exporter's ``_total`` counters)
    all:le:<ms>, all:le:inf     processing-time histogram buckets (one count per finished attempt
                                that ran: completed or failed for good)
    all:d                       enqueues that added nothing because their dedup key was held
                                (they returned the job that stands; `coordinator.dedup`)

Scripts write the hash through ``countOutcome`` / ``countDuration`` / ``countDeduplicated`` in
``registry/lua/_lib.lua``; Python writes it through `outcome_fields` (a poison message). A failed
job always adds to both ``<minute>:f`` and ``all:f``, so the error rate and
``jqc_jobs_failed_total`` agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from coordinator.clock import MINUTE_MS, minute_of, now_ms
from coordinator.models import MetricsPoint, QueueMetrics

#: Minutes of per-minute metrics that `get_queue_status` averages over.
METRICS_WINDOW_MIN = 5
#: Minutes of per-minute fields a worker's sweep keeps (older ones are deleted).
KEEP_MINUTES = 24 * 60
#: Upper bounds (ms) of the processing-time histogram buckets.
PROCESSING_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000, 300_000)
COMPLETED = "c"
FAILED = "f"
TIME_MS = "t"
TOTAL = "all"
#: Enqueues deduplicated since the queue began (no per-minute field).
DEDUPLICATED_TOTAL = f"{TOTAL}:d"
#: Fields of the totals since the queue began: completed, failed, ms, the histogram buckets and
#: deduplicated enqueues.
TOTAL_FIELDS = [f"{TOTAL}:{COMPLETED}", f"{TOTAL}:{FAILED}", f"{TOTAL}:{TIME_MS}",
                *(f"{TOTAL}:le:{b}" for b in PROCESSING_BUCKETS_MS), f"{TOTAL}:le:inf", DEDUPLICATED_TOTAL]


def processing_bucket(duration_ms: int) -> str:
    """The field of the histogram bucket a processing time falls in (``all:le:<ms>``)."""
    for bound in PROCESSING_BUCKETS_MS:
        if duration_ms <= bound:
            return f"{TOTAL}:le:{bound}"
    return f"{TOTAL}:le:inf"


def outcome_fields(kind: str, at_ms: int) -> list[str]:
    """The fields one job finished as ``kind`` (`COMPLETED` or `FAILED`) at ``at_ms`` adds 1 to;
    the Python twin of ``countOutcome`` in ``_lib.lua``."""
    return [f"{minute_of(at_ms)}:{kind}", f"{TOTAL}:{kind}"]


def window_fields(window_min: int = METRICS_WINDOW_MIN) -> list[str]:
    """The per-minute fields of the last ``window_min`` minutes (read them with one HMGET)."""
    minute = minute_of(now_ms())
    return [f"{m}:{kind}" for m in range(minute - window_min + 1, minute + 1) for kind in (COMPLETED, FAILED, TIME_MS)]


def window_metrics(fields: list[str], values: list[str | None], window_min: int = METRICS_WINDOW_MIN
                   ) -> tuple[QueueMetrics, int]:
    """The window's metrics from the values of `window_fields`, and how many jobs finished in it."""
    totals = {COMPLETED: 0, FAILED: 0, TIME_MS: 0}
    for field, value in zip(fields, values):
        totals[field[-1]] += int(value or 0)
    finished = totals[COMPLETED] + totals[FAILED]
    elapsed_min = window_min - 1 + (now_ms() % MINUTE_MS) / MINUTE_MS
    return QueueMetrics(
        throughput=round(finished / elapsed_min, 3) if elapsed_min else 0.0,
        error_rate=round(totals[FAILED] / finished, 4) if finished else 0.0,
        average_processing_time=round(totals[TIME_MS] / finished, 3) if finished else 0.0,
    ), finished


def series(fields: list[str], values: list[str | None]) -> list[MetricsPoint]:
    """One `MetricsPoint` per minute from the values of `window_fields`, oldest first."""
    points = []
    for i in range(0, len(fields), 3):
        minute = int(fields[i].split(":")[0])
        completed, failed, total_ms = (int(v or 0) for v in values[i : i + 3])
        finished = completed + failed
        points.append(MetricsPoint(
            minute=datetime.fromtimestamp(minute * MINUTE_MS / 1000, tz=timezone.utc),
            completed=completed, failed=failed, processing_time_ms=total_ms,
            average_processing_time=round(total_ms / finished, 3) if finished else 0.0,
        ))
    return points


@dataclass(frozen=True)
class Totals:
    """The ``all:*`` fields: counts since the queue began and the processing-time histogram."""

    values: dict[str, int]

    @classmethod
    def from_values(cls, values: list[str | None]) -> Totals:
        """From the values of `TOTAL_FIELDS`, in that order."""
        return cls({f: int(v or 0) for f, v in zip(TOTAL_FIELDS, values)})

    @property
    def completed(self) -> int:
        return self.values.get(f"{TOTAL}:{COMPLETED}", 0)

    @property
    def failed(self) -> int:
        return self.values.get(f"{TOTAL}:{FAILED}", 0)

    @property
    def deduplicated(self) -> int:
        return self.values.get(DEDUPLICATED_TOTAL, 0)

    @property
    def processing_ms(self) -> int:
        return self.values.get(f"{TOTAL}:{TIME_MS}", 0)

    def cumulative_buckets(self) -> list[tuple[float, int]]:
        """(upper bound in s, finished attempts at or under it) per bucket, ``inf`` last."""
        out = []
        running = 0
        for bound in PROCESSING_BUCKETS_MS:
            running += self.values.get(f"{TOTAL}:le:{bound}", 0)
            out.append((bound / 1000, running))
        running += self.values.get(f"{TOTAL}:le:inf", 0)
        out.append((float("inf"), running))
        return out


def stale_minute_fields(fields: list[str], keep_minutes: int = KEEP_MINUTES) -> list[str]:
    """Per-minute fields older than ``keep_minutes`` (the sweep deletes them)."""
    oldest = minute_of(now_ms()) - keep_minutes
    return [field for field in fields
            if field.split(":")[0].isdigit() and int(field.split(":")[0]) < oldest]
