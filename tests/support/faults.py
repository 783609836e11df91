"""Counting what a fault scenario lost or ran twice, from the registry and the processors' own records."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from coordinator import JobQueueCoordinator
from tests.support.servers import RedisServer


def coordinator_on(server: RedisServer, **settings: object) -> JobQueueCoordinator:
    """A coordinator on a throwaway server, with fast sweeps and a stream long enough to count."""
    defaults: dict[str, object] = dict(prefix="rel", stalled_interval_ms=1000, lock_duration_ms=2000,
                                       promote_interval_ms=50, events_max_len=1_000_000)
    defaults.update(settings)
    return JobQueueCoordinator(server.url, **defaults)


def completions(coord: JobQueueCoordinator, queue: str) -> Counter[str]:
    """How many ``completed`` events each job has in the queue's stream (must be 1 each)."""
    counts: Counter[str] = Counter()
    for _, fields in coord._redis.xrange(coord.keys.for_queue(queue).events):
        if fields.get("event") == "completed":
            counts[fields["job_id"]] += 1
    return counts


def lost_and_duplicated(coord: JobQueueCoordinator, queue: str, job_ids: list[str]) -> tuple[int, int]:
    done = completions(coord, queue)
    lost = sum(1 for job_id in job_ids if done[job_id] == 0)
    duplicated = sum(count - 1 for count in done.values() if count > 1)
    return lost, duplicated


def diagnosis(coord: JobQueueCoordinator, queue: str) -> str:
    """What a failed scenario left behind: counts, workers, broker lists, the workers' log tails."""
    keys = coord.keys.for_queue(queue)
    workers = coord.get_all_worker_status()
    logs = "\n".join(Path(w.log_file).read_text(errors="replace")[-3000:] for w in workers if w.log_file)
    return (f"{coord.get_queue_status(queue).counts}; workers {[(w.id, w.state.value, w.pid, w.restarts) for w in workers]}; "
            f"broker lists {[coord._redis.llen(k) for k in keys.broker_lists]}; unacked {coord._redis.hlen(coord.keys.unacked)}\n"
            f"{logs}")
