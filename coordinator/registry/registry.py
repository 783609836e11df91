"""The job registry in Redis: one hash per job, one sorted set per state, a stream of events.

Every state move is one Lua script (see `lua/`), so a crash at any point leaves each job in
exactly one state index. Reads are plain commands, pipelined into one round trip where possible.
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import redis

from coordinator.clock import minute_of, now_ms
from coordinator.dispatch import Dispatch, delivery_tag, parse_delivery_tag, task_id
from coordinator.errors import JobNotFoundError, QueueNotFoundError, RedisUnavailableError
from coordinator.keys import STATE_INDEXES, CoordinatorKeys, QueueKeys
from coordinator.metrics import FAILED, outcome_fields, processing_bucket, stale_minute_fields
from coordinator.models import (
    EventName,
    Job,
    JobOptions,
    JobState,
    QueueConfig,
    QueueCounts,
    RateLimit,
    Retention,
    WorkerAction,
)
from coordinator.registry.codec import job_from_hash
from coordinator.registry.replies import Reply, interpret_reply
from coordinator.registry.scripts import Scripts
from coordinator.validation import MAX_LOG_LINE, MAX_LOG_LINES, MAX_PROGRESS_SIZE, encode_json

#: Jobs per script call in `enqueue` (bulk) and in the workers' sweeps.
BATCH_SIZE = 500
#: Broker list items read per LRANGE in `Registry.recover_lost`.
LIST_CHUNK = 1000


def _message_task_id(raw: str) -> str:
    """The Celery task id of a kombu message in a broker list ('' if it has none)."""
    try:
        headers = json.loads(raw).get("headers")
        return str(headers.get("id", "")) if isinstance(headers, dict) else ""
    except (ValueError, AttributeError):
        return ""

def _dispatches(method: Callable[..., Any]) -> Callable[..., Any]:
    """Marks a write whose scripts may leave messages in an outbox: publish them right after."""

    @functools.wraps(method)
    def write_then_publish(self: Registry, queue: str, *args: Any, **kwargs: Any) -> Any:
        result = method(self, queue, *args, **kwargs)
        if self.after_dispatch is not None and result:
            self.after_dispatch(queue)
        return result

    return write_then_publish


@dataclass(frozen=True)
class NewJob:
    """A job ready to be written: id chosen, data encoded, options resolved."""

    id: str
    name: str
    data_json: str
    options: JobOptions
    due_ms: int = 0
    schedule_key: str = ""
    created_ms: int = 0
    """When the job was created (ms); 0: now. A recurring job's run passes its tick's time."""
    trace_id: str = ""
    expires_ms: int = 0
    """Start deadline (epoch ms); 0: none."""


@dataclass(frozen=True)
class StartResult:
    """What `Registry.start` decided for one received message."""

    status: str
    """``active`` (run it), ``missing``, ``stale``, ``paused``, ``limited`` or ``expired``."""
    job: Job | None = None


class Registry:
    """Reads and atomic writes of the job registry of one prefix."""

    def __init__(self, client: redis.Redis, prefix: str, events_max_len: int = 10_000,
                 finish_retry_s: float = 0.0, outbox: bool = False) -> None:
        self.client = client
        self.keys = CoordinatorKeys(prefix)
        self.events_max_len = events_max_len
        self.finish_retry_s = finish_retry_s
        self.scripts = Scripts(client)
        self._seen_epoch: str | None = None
        self.outbox = outbox
        #: Called with a queue name after a write that may have dispatched jobs (the outbox relay).
        self.after_dispatch: Callable[[str], object] | None = None
        #: Called with (queue, flow box field, entry JSON) after a move that wrote a flow
        #: hand-off (`coordinator.flows.handoff`).
        self.on_handoff: Callable[[str, str, str], object] | None = None

    def queue_keys(self, queue: str) -> QueueKeys:
        return self.keys.for_queue(queue)

    def broker_keys(self, qk: QueueKeys) -> list[str]:
        """Where the scripts write a dispatch's message, per priority level: kombu's lists when
        Redis is the broker, else the queue's outbox (see `coordinator.broker`)."""
        return [qk.outbox] * len(qk.broker_lists) if self.outbox else qk.broker_lists

    def claim_outbox(self, queue: str, count: int, stale_ms: int) -> list[str]:
        qk = self.queue_keys(queue)
        return self.scripts.claim_outbox(keys=[qk.outbox, qk.relaying], args=[now_ms(), count, stale_ms])

    def release_outbox(self, queue: str, messages: list[str]) -> None:
        """Forget messages the broker confirmed."""
        if messages:
            self.client.zrem(self.queue_keys(queue).relaying, *messages)

    def _dispatch_args(self, queue: str) -> list[str]:
        """ARGV the dispatching scripts share: task name, Celery queue, queue name."""
        return [self.keys.task_name(queue), self.queue_keys(queue).celery_queue, queue]

    # ----------------------------------------------------------------------------- queues

    def save_queue(self, config: QueueConfig) -> bool:
        """Create or update a queue; True if it was created."""
        qk = self.queue_keys(config.name)
        # The queue's own keys in one MULTI (one cluster slot); the prefix-wide set and epoch
        # marker after it, in another slot: a crash in between leaves a working queue that is
        # listed again by the next save.
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(qk.meta, "config", config.model_dump_json())
        pipe.hsetnx(qk.meta, "created", now_ms())
        pipe.hsetnx(qk.meta, "paused", "0")
        _, created, _ = pipe.execute()
        pipe = self.client.pipeline(transaction=False)
        pipe.sadd(self.keys.queues, config.name)
        pipe.set(self.keys.epoch, f"{uuid.uuid4()}@{now_ms()}", nx=True)
        pipe.get(self.keys.epoch)
        _, _, epoch = pipe.execute()
        self.epoch_lost(epoch)
        return bool(created)

    def epoch_lost(self, current: str | None) -> bool:
        """True when the epoch marker (`CoordinatorKeys.epoch`) this process first saw has gone or
        changed since: Redis lost the registry (restarted without persistence, flushed, evicted)."""
        if self._seen_epoch is None:
            self._seen_epoch = current
            return False
        return current != self._seen_epoch

    def queue_meta(self, queue: str) -> dict[str, str]:
        """The queue's meta hash; QueueNotFoundError if it was never created."""
        meta = self.client.hgetall(self.queue_keys(queue).meta)
        if not meta:
            raise QueueNotFoundError(queue)
        return meta

    def set_processor_name(self, queue: str, name: str) -> None:
        """Record the name of the queue's processor, so producers elsewhere default job names to it."""
        self.client.hset(self.queue_keys(queue).meta, "processor", name)

    def queue_names(self) -> list[str]:
        return sorted(self.client.smembers(self.keys.queues))

    def set_paused(self, queue: str, paused: bool) -> None:
        qk = self.queue_keys(queue)
        pipe = self.client.pipeline(transaction=True)
        pipe.exists(qk.meta)
        pipe.hset(qk.meta, "paused", "1" if paused else "0")
        event = EventName.PAUSED if paused else EventName.RESUMED
        pipe.xadd(qk.events, {"event": event.value, "job_id": ""},
                  maxlen=self.events_max_len, approximate=True)
        exists, _, _ = pipe.execute()
        if not exists:
            self.client.delete(qk.meta)
            raise QueueNotFoundError(queue)

    def delete_queue(self, queue: str) -> None:
        """Remove the queue's jobs, indexes, events, metrics, broker lists and meta."""
        qk = self.queue_keys(queue)
        self.client.srem(self.keys.queues, queue)
        self.client.delete(qk.meta)  # first: nothing new can be enqueued
        batch: list[str] = []
        for key in self.client.scan_iter(match=qk.pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                self.client.unlink(*batch)
                batch.clear()
        self.client.unlink(*batch, *self.broker_keys(qk))

    # ----------------------------------------------------------------------------- jobs in

    def enqueue(self, queue: str, jobs: list[NewJob]) -> list[bool]:
        """Add jobs (each batch of BATCH_SIZE in one round trip); True per job added, False
        where a job with that id existed and nothing was written."""
        added: list[bool] = []
        for flags in self.enqueue_batches(queue, jobs):
            added.extend(flags)
        return added

    def enqueue_batches(self, queue: str, jobs: list[NewJob]) -> Iterator[list[bool]]:
        """`enqueue`, yielding each batch's flags in order. While the caller handles one batch's
        flags, the next batch already runs in Redis (sent from a helper thread), so the caller's
        Python work overlaps the scripts. A batch that fails raises, and no later batch is sent."""
        batches = [jobs[start : start + BATCH_SIZE] for start in range(0, len(jobs), BATCH_SIZE)]
        if len(batches) <= 1:
            yield from (self._enqueue_batch(queue, batch) for batch in batches)
        else:
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="jqc-enqueue") as sender:
                pending = sender.submit(self._enqueue_batch, queue, batches[0])
                for batch in batches[1:]:
                    flags = pending.result()
                    pending = sender.submit(self._enqueue_batch, queue, batch)
                    yield flags
                yield pending.result()
        if self.after_dispatch is not None:
            self.after_dispatch(queue)

    def _enqueue_batch(self, queue: str, jobs: list[NewJob]) -> list[bool]:
        keys, args = self.enqueue_call(queue, jobs)
        result = self.scripts.enqueue(keys=keys, args=args)
        if not isinstance(result, list):
            interpret_reply("enqueue", result, queue)
        return [flag == Reply.DONE for flag in result]

    def enqueue_call(self, queue: str, jobs: list[NewJob]) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of one `lua/enqueue.lua` call (also queued in a flow's MULTI)."""
        qk = self.queue_keys(queue)
        keys = [qk.meta, qk.index("waiting"), qk.index("delayed"), qk.parked, qk.events, *self.broker_keys(qk)]
        args: list[Any] = [now_ms(), *self._dispatch_args(queue), self.events_max_len]
        encoded: dict[int, str] = {}  # options JSON by object: jobs of one call often share one
        for job in jobs:
            opts = job.options
            opts_json = encoded.get(id(opts))
            if opts_json is None:
                opts_json = encoded[id(opts)] = opts.model_dump_json(exclude_defaults=True)
            keys.append(qk.job(job.id))
            args += [
                job.id, job.name, job.data_json, opts_json,
                opts.priority, job.due_ms, "" if opts.timeout is None else opts.timeout,
                job.trace_id, opts.max_retries, job.schedule_key, job.created_ms, job.expires_ms,
            ]
        return keys, args

    # ----------------------------------------------------------------------------- worker side

    def start(self, queue: str, job_id: str, token: int, worker_id: str, hostname: str,
              lock_ms: int, limiter: RateLimit | None) -> StartResult:
        """Claim a received dispatch of a job; see `lua/start.lua` for the outcomes."""
        qk = self.queue_keys(queue)
        reply = self.scripts.start(
            keys=[qk.job(job_id), qk.index("waiting"), qk.index("active"), qk.parked, qk.meta,
                  qk.events, qk.lock(job_id), qk.limiter, qk.index("cancelled"), qk.dependents(job_id),
                  qk.flowbox],
            args=[job_id, token, now_ms(), worker_id, lock_ms, self.events_max_len,
                  limiter.max if limiter else 0, limiter.duration if limiter else 0, hostname],
        )
        if reply[0] != "active":
            return StartResult(reply[0])
        fields = dict(zip(reply[1::2], reply[2::2]))
        job = job_from_hash(queue, job_id, fields)
        job._registry = self
        job._token = token
        return StartResult("active", job)

    def renew_locks(self, attempts: Iterable[tuple[str, str, int]], lock_ms: int) -> list[str]:
        """Renew the locks of running attempts, given as (queue, job id, token), in one round
        trip; per attempt "" if it still owns its job, else ``<state>:<reason>`` of the job."""
        by_queue: dict[str, list[tuple[int, str, int]]] = {}
        for position, (queue, job_id, token) in enumerate(attempts):
            by_queue.setdefault(queue, []).append((position, job_id, token))
        pipe = self.client.pipeline(transaction=False)
        for queue, items in by_queue.items():
            qk = self.queue_keys(queue)
            keys = [key for _, job_id, _ in items for key in (qk.lock(job_id), qk.job(job_id))]
            self.scripts.renew(keys=keys, args=[lock_ms, *(token for _, _, token in items)], client=pipe)
        out = [""] * sum(len(items) for items in by_queue.values())
        for items, replies in zip(by_queue.values(), pipe.execute()):
            for (position, _, _), reply in zip(items, replies):
                out[position] = reply
        return out

    def finish(self, queue: str, job_id: str, token: int, outcome: str, *, payload: str = "",
               stack: str = "", due_ms: int = 0, remove: bool = False, duration_ms: int = 0) -> bool:
        """End an attempt: ``completed`` (payload = result JSON), ``failed`` or ``retry``
        (payload = reason). False when this attempt no longer owns the job."""
        qk = self.queue_keys(queue)
        now = now_ms()
        keys = [qk.job(job_id), qk.index("active"), qk.index("completed"), qk.index("failed"),
                qk.index("delayed"), qk.events, qk.lock(job_id), qk.metrics, qk.logs(job_id),
                qk.dependents(job_id), qk.flowbox]
        args = [job_id, token, outcome, now, payload, stack, due_ms, "1" if remove else "0",
                self.events_max_len, minute_of(now), duration_ms, processing_bucket(duration_ms)]
        # A finished attempt outlives a short Redis outage rather than run again; repeating the
        # script is safe, since a second call finds the job no longer owned (fencing by token).
        deadline = time.monotonic() + self.finish_retry_s
        while True:
            try:
                reply = self.scripts.finish(keys=keys, args=args)
            except RedisUnavailableError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.2)
                continue
            if isinstance(reply, list):  # a flow hand-off was written: apply it now
                if self.on_handoff is not None:
                    self.on_handoff(queue, reply[1], reply[2])
                return True
            return interpret_reply("finish", reply, queue, job_id)

    def update_progress(self, queue: str, job_id: str, token: int | None, progress: Any) -> bool:
        qk = self.queue_keys(queue)
        encoded = encode_json(progress, "progress", MAX_PROGRESS_SIZE)
        return self.scripts.progress(
            keys=[qk.job(job_id), qk.events], args=[job_id, token, encoded, self.events_max_len]
        ) == Reply.DONE

    def add_log(self, queue: str, job_id: str, line: str) -> None:
        qk = self.queue_keys(queue)
        pipe = self.client.pipeline(transaction=True)
        pipe.rpush(qk.logs(job_id), str(line)[:MAX_LOG_LINE])
        pipe.ltrim(qk.logs(job_id), -MAX_LOG_LINES, -1)
        pipe.execute()

    def record_poison(self, queue: str, raw: bytes | str, reason: str) -> str:
        """Record a message that could not be run (undecodable, pickle, unknown task) as a failed
        job, so it shows in the dead-letter list instead of vanishing; returns its id."""
        qk = self.queue_keys(queue)
        job_id = f"poison-{uuid.uuid4()}"
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        now = now_ms()
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(qk.job(job_id), mapping={
            "name": "poison-message", "data": json.dumps(text[:MAX_LOG_LINE]), "state": "failed",
            "attempts": 0, "created": now, "finished": now, "reason": reason[:MAX_LOG_LINE],
        })
        pipe.zadd(qk.index("failed"), {job_id: now})
        for field in outcome_fields(FAILED, now):
            pipe.hincrby(qk.metrics, field, 1)
        pipe.xadd(qk.events, {"event": "failed", "job_id": job_id, "reason": reason[:1000]},
                  maxlen=self.events_max_len, approximate=True)
        pipe.execute()
        return job_id

    # ----------------------------------------------------------------------------- job control

    def cancel(self, queue: str, job_id: str, allow_active: bool = False, reason: str = "cancelled") -> bool:
        qk = self.queue_keys(queue)
        reply = self.scripts.cancel(
            keys=[qk.job(job_id), qk.index("waiting"), qk.index("delayed"), qk.parked,
                  qk.index("active"), qk.index("cancelled"), qk.events, qk.lock(job_id),
                  qk.index("waiting_children"), qk.dependents(job_id), qk.flowbox],
            args=[job_id, now_ms(), "1" if allow_active else "0", self.events_max_len, reason],
        )
        if isinstance(reply, list):
            if self.on_handoff is not None:
                self.on_handoff(queue, reply[1], reply[2])
            reply = Reply.DONE
        return interpret_reply("cancel", reply, queue, job_id)

    def remove(self, queue: str, job_id: str) -> bool:
        """Delete a finished (completed, failed or cancelled) job with its logs; False if it is
        not finished. The script removes it only if it is still in that state's index."""
        qk = self.queue_keys(queue)
        state = self.client.hget(qk.job(job_id), "state")
        if state is None:
            raise JobNotFoundError(queue, job_id)
        if not JobState(state).is_final:
            return False
        return self.scripts.remove_finished(keys=[qk.index(state), qk.job(job_id), qk.logs(job_id)],
                                            args=[job_id]) == 1

    @_dispatches
    def retry(self, queue: str, job_id: str) -> bool:
        qk = self.queue_keys(queue)
        reply = self.scripts.retry(
            keys=[qk.job(job_id), qk.index("failed"), qk.index("cancelled"), qk.index("waiting"),
                  qk.parked, qk.meta, qk.events, *self.broker_keys(qk)],
            args=[job_id, now_ms(), *self._dispatch_args(queue), self.events_max_len],
        )
        return interpret_reply("retry", reply, queue, job_id)

    @_dispatches
    def change_priority(self, queue: str, job_id: str, priority: int) -> bool:
        qk = self.queue_keys(queue)
        reply = self.scripts.change_priority(
            keys=[qk.job(job_id), qk.parked, qk.meta, qk.events, *self.broker_keys(qk)],
            args=[job_id, priority, now_ms(), *self._dispatch_args(queue), self.events_max_len],
        )
        return interpret_reply("change_priority", reply, queue, job_id)

    @_dispatches
    def promote(self, queue: str, job_id: str) -> bool:
        """Move one delayed job to waiting now."""
        if not self.client.exists(self.queue_keys(queue).job(job_id)):
            raise JobNotFoundError(queue, job_id)
        return self._promote(queue, [job_id], force=True) == 1

    def _promote(self, queue: str, job_ids: list[str], force: bool) -> int:
        qk = self.queue_keys(queue)
        return self.scripts.promote(
            keys=[qk.index("delayed"), qk.index("waiting"), qk.parked, qk.meta, qk.events,
                  *self.broker_keys(qk), qk.index("cancelled"), qk.flowbox,
                  *(key for job_id in job_ids for key in (qk.job(job_id), qk.dependents(job_id)))],
            args=[now_ms(), "1" if force else "0", *self._dispatch_args(queue),
                  self.events_max_len, *job_ids],
        )

    # ----------------------------------------------------------------------------- sweeps

    @_dispatches
    def promote_due(self, queue: str) -> int:
        """Move delayed jobs that are due to waiting (a worker's periodic sweep)."""
        due = self.client.zrangebyscore(self.queue_keys(queue).index("delayed"), "-inf", now_ms(),
                                        start=0, num=BATCH_SIZE)
        return self._promote(queue, due, force=False) if due else 0

    @_dispatches
    def release_parked(self, queue: str, limiter: RateLimit | None) -> int:
        """Dispatch parked jobs whose hold is over (queue resumed, rate-limit window passed)."""
        qk = self.queue_keys(queue)
        count = BATCH_SIZE if limiter is None else min(BATCH_SIZE, limiter.max)
        due = self.client.zrangebyscore(qk.parked, "-inf", now_ms(), start=0, num=count)
        if not due:
            return 0
        return self.scripts.release(
            keys=[qk.parked, qk.meta, qk.limiter, *self.broker_keys(qk), *(qk.job(job_id) for job_id in due)],
            args=[now_ms(), *self._dispatch_args(queue), limiter.max if limiter else 0,
                  limiter.duration if limiter else 0, *due],
        )

    @_dispatches
    def recover_stalled(self, queue: str, max_stalled_count: int) -> int:
        """Send active jobs whose lock expired back to waiting (or fail them); see the script."""
        qk = self.queue_keys(queue)
        active = self.client.zrange(qk.index("active"), 0, -1)
        if not active:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for job_id in active:
            pipe.exists(qk.lock(job_id))
        stalled = [job_id for job_id, locked in zip(active, pipe.execute()) if not locked]
        recovered = 0
        for start in range(0, len(stalled), BATCH_SIZE):
            batch = stalled[start : start + BATCH_SIZE]
            keys = [qk.index("active"), qk.index("waiting"), qk.index("failed"), qk.parked, qk.meta,
                    qk.events, qk.metrics, *self.broker_keys(qk), qk.flowbox]
            for job_id in batch:
                keys += [qk.job(job_id), qk.lock(job_id), qk.dependents(job_id)]
            recovered += self.scripts.recover_stalled(
                keys=keys,
                args=[now_ms(), max_stalled_count, *self._dispatch_args(queue), self.events_max_len,
                      minute_of(now_ms()), *batch],
            )
        return recovered

    def hold_unacked(self, delivery_tags: list[str]) -> None:
        """A live worker still holds these messages (prefetched or running): their time in
        kombu's unacked index becomes now (never adding one that was acked meanwhile)."""
        now = time.time()
        self.client.zadd(self.keys.unacked_index, {tag: now for tag in delivery_tags}, xx=True)

    def recover_unstarted(self, queue: str, older_than_ms: int) -> list[str]:
        """Re-dispatch waiting jobs whose message a worker fetched and never started (it died
        in between); see `lua/recover_orphans.lua`.

        Reads kombu's unacked index (Redis broker only): a live worker marks the messages it
        holds (prefetched or running) every third of a lock duration (`hold_unacked`), so an
        unacked message unmarked for ``older_than_ms`` whose job is still waiting with the same
        token is stranded. Its unacked entry is removed once the job has a new dispatch.
        """
        qk = self.queue_keys(queue)
        cutoff_s = (now_ms() - older_than_ms) / 1000
        candidates: dict[str, Dispatch] = {}
        for tag in self.client.zrangebyscore(self.keys.unacked_index, "-inf", cutoff_s):
            dispatch = parse_delivery_tag(tag, qk.celery_queue)
            if dispatch is not None:
                candidates[tag] = dispatch
        recovered: list[str] = []
        items = list(candidates.items())
        for start in range(0, len(items), BATCH_SIZE):
            batch = items[start : start + BATCH_SIZE]
            moved = self._redispatch_unstarted(queue, [dispatch for _, dispatch in batch])
            stranded = [tag for tag, (job_id, _) in batch if job_id in moved]
            if stranded:
                pipe = self.client.pipeline(transaction=False)
                pipe.hdel(self.keys.unacked, *stranded)
                pipe.zrem(self.keys.unacked_index, *stranded)
                pipe.execute()
            recovered += sorted(moved)
        return recovered

    def recover_lost(self, queue: str) -> list[str]:
        """Re-dispatch waiting jobs whose current message is nowhere: in no broker list and not
        unacked. kombu's Redis consumer has a popped message in flight (BRPOP answered, not yet
        in the unacked hash) almost all the time while a backlog waits; a worker killed then
        loses it. Called once a worker is known dead (Redis broker only): it reads the whole
        waiting index and broker lists. A message in flight to a live worker meanwhile gets a
        duplicate dispatch, which the token makes stale (never run twice)."""
        if self.outbox:
            return []
        qk = self.queue_keys(queue)
        waiting = self.client.zrange(qk.index("waiting"), 0, -1)
        if not waiting:
            return []
        pipe = self.client.pipeline(transaction=False)
        for job_id in waiting:
            pipe.hget(qk.job(job_id), "token")
        snapshot = [Dispatch(job_id, int(token)) for job_id, token in zip(waiting, pipe.execute())
                    if token is not None and token.isdigit()]
        queued: set[str] = set()  # read after the snapshot: a job dispatched later is no candidate
        for key in qk.broker_lists:
            for start in range(0, self.client.llen(key), LIST_CHUNK):
                for raw in self.client.lrange(key, start, start + LIST_CHUNK - 1):
                    queued.add(_message_task_id(raw))
        unqueued = [d for d in snapshot if task_id(*d) not in queued]
        pipe = self.client.pipeline(transaction=False)
        for job_id, token in unqueued:
            pipe.hexists(self.keys.unacked, delivery_tag(qk.celery_queue, job_id, token))
        lost = [d for d, unacked in zip(unqueued, pipe.execute()) if not unacked]
        recovered: list[str] = []
        for start in range(0, len(lost), BATCH_SIZE):
            recovered += sorted(self._redispatch_unstarted(queue, lost[start : start + BATCH_SIZE]))
        return recovered

    def _redispatch_unstarted(self, queue: str, dispatches: list[Dispatch]) -> set[str]:
        """`lua/recover_orphans.lua` over dispatches still waiting with that token: the ids moved."""
        qk = self.queue_keys(queue)
        keys = [qk.parked, qk.meta, qk.events, *self.broker_keys(qk), *(qk.job(job_id) for job_id, _ in dispatches)]
        args: list[Any] = [now_ms(), *self._dispatch_args(queue), self.events_max_len]
        for job_id, token in dispatches:
            args += [job_id, token]
        return set(self.scripts.recover_orphans(keys=keys, args=args))

    def trim(self, queue: str, retention: Retention, keep_completed: int | None = None) -> int:
        """Remove finished jobs beyond the queue's retention (count and age), oldest first."""
        qk = self.queue_keys(queue)
        now = now_ms()
        removed = 0
        rules = (
            ("completed", retention.completed_count if keep_completed is None else keep_completed,
             retention.completed_age_s),
            ("failed", retention.failed_count, retention.failed_age_s),
            ("cancelled", retention.failed_count, retention.failed_age_s),
        )
        for state, keep, age_s in rules:
            index = qk.index(state)
            while True:  # batch after batch, so a steady stream cannot outgrow the retention
                excess = self.client.zcard(index) - keep
                victims: list[str] = self.client.zrange(index, 0, min(excess, BATCH_SIZE) - 1) if excess > 0 else []
                if age_s is not None:
                    victims += self.client.zrangebyscore(index, "-inf", now - age_s * 1000, start=0, num=BATCH_SIZE)
                victims = list(dict.fromkeys(victims))
                if not victims:
                    break
                keys = [index]
                for job_id in victims:
                    keys += [qk.job(job_id), qk.logs(job_id), *qk.flow_keys(job_id)]
                done = self.scripts.remove_finished(keys=keys, args=victims)
                removed += done
                if done == 0 or len(victims) < BATCH_SIZE:
                    break
        return removed

    def trim_metrics(self, queue: str) -> None:
        """Delete the queue's per-minute metrics older than a day (see `coordinator.metrics`)."""
        key = self.queue_keys(queue).metrics
        stale = stale_minute_fields(self.client.hkeys(key))
        if stale:
            self.client.hdel(key, *stale)

    # ----------------------------------------------------------------------------- worker events

    def emit_worker_event(self, queue: str, action: WorkerAction, worker_id: str, **fields: Any) -> None:
        """Append a ``worker`` event (`WorkerAction`: crashed, restarted, gave_up) to the queue's stream."""
        entry = {"event": EventName.WORKER.value, "job_id": "", "action": action.value, "worker": worker_id}
        entry.update({name: str(value) for name, value in fields.items() if value is not None})
        self.client.xadd(self.queue_keys(queue).events, entry, maxlen=self.events_max_len, approximate=True)

    # ----------------------------------------------------------------------------- reads

    def get_job(self, queue: str, job_id: str) -> Job | None:
        return self._read_job(queue, job_id, with_last_event=False)[0]

    def get_job_after_event(self, queue: str, job_id: str) -> tuple[Job | None, str]:
        """The job, and the id of the queue's last event before it was read, in one round trip:
        a wait for the events after that id misses no change of the job."""
        return self._read_job(queue, job_id, with_last_event=True)

    def _read_job(self, queue: str, job_id: str, with_last_event: bool) -> tuple[Job | None, str]:
        qk = self.queue_keys(queue)
        pipe = self.client.pipeline(transaction=False)
        if with_last_event:
            pipe.xrevrange(qk.events, count=1)
        pipe.hgetall(qk.job(job_id))
        pipe.lrange(qk.logs(job_id), 0, -1)
        replies = pipe.execute()
        fields, logs = replies[-2:]
        last_id = replies[0][0][0] if with_last_event and replies[0] else "0-0"
        if not fields:
            return None, last_id
        return job_from_hash(queue, job_id, fields, logs), last_id

    def get_jobs(self, queue: str, states: Iterable[JobState | str], start: int = 0, end: int = -1,
                 asc: bool = False) -> list[Job]:
        """Jobs in the given states, newest first (or oldest first), sliced like a Redis range."""
        qk = self.queue_keys(queue)
        states = [JobState(state).value for state in states]
        if len(states) == 1:
            index = qk.index(states[0])
            ids = (self.client.zrange if asc else self.client.zrevrange)(index, start, end)
        else:
            pipe = self.client.pipeline(transaction=False)
            for state in states:
                pipe.zrange(qk.index(state), 0, -1, withscores=True)
            scored = [pair for pairs in pipe.execute() for pair in pairs]
            scored.sort(key=lambda pair: pair[1], reverse=not asc)
            ordered = [job_id for job_id, _ in scored]
            ids = ordered[start:] if end == -1 else ordered[start : end + 1]
        if not ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(qk.job(job_id))
            pipe.lrange(qk.logs(job_id), 0, -1)
        replies = pipe.execute()
        jobs = []
        for job_id, fields, logs in zip(ids, replies[0::2], replies[1::2]):
            if fields:  # removed between the two reads
                jobs.append(job_from_hash(queue, job_id, fields, logs))
        return jobs

    def counts(self, queue: str) -> QueueCounts:
        """Jobs per state: one ZCARD each, in one round trip; O(1) whatever the queue's size."""
        qk = self.queue_keys(queue)
        pipe = self.client.pipeline(transaction=False)
        for state in STATE_INDEXES:
            pipe.zcard(qk.index(state))
        return QueueCounts(**dict(zip(STATE_INDEXES, pipe.execute())))

    def last_event_id(self, queue: str) -> str:
        entries = self.client.xrevrange(self.queue_keys(queue).events, count=1)
        return entries[0][0] if entries else "0-0"

    def read_events(self, queue: str, after_id: str, block_ms: int | None, count: int = 500
                    ) -> list[tuple[str, dict[str, str]]]:
        """Events after ``after_id``, waiting up to ``block_ms`` for the first one."""
        reply = self.client.xread({self.queue_keys(queue).events: after_id}, count=count, block=block_ms)
        return reply[0][1] if reply else []
