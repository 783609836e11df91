"""Every registry operation as a sans-IO generator: the keys and arguments of each script call,
the commands of each read, and the parsing of their replies, in one place per script.

Run one with an executor: ``registry.run(registry.ops.cancel(queue, job_id))`` (sync) or
``await aregistry.run(aregistry.ops.cancel(queue, job_id))`` (asyncio); see `calls`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from coordinator.clock import minute_of, now_ms
from coordinator.dedup import DedupEntry
from coordinator.dispatch import parse_delivery_tag
from coordinator.errors import (
    GroupFullError,
    InvalidArgumentError,
    JobNotFoundError,
    QueueNotFoundError,
    RedisUnavailableError,
)
from coordinator.keys import STATE_INDEXES, CoordinatorKeys, QueueKeys
from coordinator.metrics import FAILED, outcome_fields, processing_bucket
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
from coordinator.registry.calls import Batch, Command, Op, Script, Sleep, UnlinkMatching, cmd
from coordinator.registry.codec import job_from_hash
from coordinator.registry.replies import Added, Reply, enqueue_outcome, interpret_reply
from coordinator.validation import MAX_LOG_LINE, MAX_LOG_LINES, MAX_PROGRESS_SIZE, encode_json

#: Jobs per script call in `enqueue` (bulk) and in the workers' sweeps.
BATCH_SIZE = 500
#: Pause between two tries of a finish while Redis is away.
FINISH_RETRY_PAUSE_S = 0.2
#: Lease of a concurrency slot (ms) until the coordinator's lock duration is set (`RegistryOps.lease_ms`).
DEFAULT_LEASE_MS = 30_000
#: The name a queue's own concurrency cap has in events and `capped` replies.
QUEUE_CAP = "queue"


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
    dedup: DedupEntry | None = None
    """Its dedup key and mode, resolved (`coordinator.dedup`); None: not deduplicated."""


@dataclass(frozen=True)
class StartResult:
    """What `start` decided for one received message."""

    status: str
    """``active`` (run it), ``missing``, ``stale``, ``paused``, ``limited``, ``expired`` or ``capped``."""
    job: Job | None = None


class RegistryOps:
    """The operations on the registry of one prefix; each method returns an `Op` to run."""

    def __init__(self, prefix: str, events_max_len: int = 10_000, finish_retry_s: float = 0.0,
                 outbox: bool = False) -> None:
        self.keys = CoordinatorKeys(prefix)
        self.events_max_len = events_max_len
        self.finish_retry_s = finish_retry_s
        self.outbox = outbox
        self.lease_ms = DEFAULT_LEASE_MS
        """Lease of a concurrency slot (ms): the lock duration, since leases are renewed with locks."""
        #: Called with (queue, flow box field, entry JSON) after a move that wrote a flow
        #: hand-off (`coordinator.flows.handoff`); a blocking call, from either executor.
        self.on_handoff: Callable[[str, str, str], object] | None = None

    def queue_keys(self, queue: str) -> QueueKeys:
        return self.keys.for_queue(queue)

    def broker_keys(self, qk: QueueKeys) -> list[str]:
        """Where the scripts write a dispatch's message, per priority level: kombu's lists when
        Redis is the broker, else the queue's outbox (see `coordinator.broker`)."""
        return [qk.outbox] * len(qk.broker_lists) if self.outbox else qk.broker_lists

    def dispatch_args(self, queue: str) -> list[str]:
        """ARGV the dispatching scripts share: task name, Celery queue, queue name."""
        return [self.keys.task_name(queue), self.queue_keys(queue).celery_queue, queue]

    def _handed_off(self, queue: str, reply: list[Any]) -> None:
        if self.on_handoff is not None:
            self.on_handoff(queue, reply[1], reply[2])

    def _event(self, stream: str, fields: dict[str, Any]) -> Any:
        return cmd("xadd", stream, fields, maxlen=self.events_max_len, approximate=True)

    def claim_outbox(self, queue: str, count: int, stale_ms: int) -> Op[list[str]]:
        qk = self.queue_keys(queue)
        return (yield Script("claim_outbox", [qk.outbox, qk.relaying], [now_ms(), count, stale_ms]))

    def take(self, queue: str, worker_node: str, count: int) -> Op[list[tuple[str, str, int]]]:
        """Take up to ``count`` messages of the queue for an async worker's own consumer (Redis
        broker): (delivery tag, job id, token) of each; see `lua/take.lua`. Ack them with `ack`."""
        qk = self.queue_keys(queue)
        tags = yield Script("take", [self.keys.unacked, self.keys.unacked_index, self.keys.worker_paused(worker_node),
                                     *qk.broker_lists], [time.time(), count, qk.celery_queue])
        taken = []
        for tag in tags:
            dispatch = parse_delivery_tag(tag, qk.celery_queue)
            if dispatch is not None:
                taken.append((tag, dispatch.job_id, dispatch.token))
        return taken

    def ack(self, tags: list[str]) -> Op[None]:
        """Forget taken messages once their jobs started (or turned out stale)."""
        if tags:
            yield Batch([cmd("hdel", self.keys.unacked, *tags), cmd("zrem", self.keys.unacked_index, *tags)])

    # ----------------------------------------------------------------------------- queues

    def save_queue(self, config: QueueConfig) -> Op[tuple[bool, str | None]]:
        """Create or update a queue: (created, the epoch marker as read after the save)."""
        qk = self.queue_keys(config.name)
        # The queue's own keys in one MULTI (one cluster slot); the prefix-wide set and epoch
        # marker after it, in another slot: a crash in between leaves a working queue that is
        # listed again by the next save.
        _, created, _, _ = yield Batch([
            cmd("hset", qk.meta, "config", config.model_dump_json()),
            cmd("hsetnx", qk.meta, "created", now_ms()),
            cmd("hsetnx", qk.meta, "paused", "0"),
            cmd("hset", qk.meta, "group_window", config.group_window),
        ], transaction=True)
        _, _, epoch = yield Batch([
            cmd("sadd", self.keys.queues, config.name),
            cmd("set", self.keys.epoch, f"{uuid.uuid4()}@{now_ms()}", nx=True),
            cmd("get", self.keys.epoch),
        ])
        return bool(created), epoch

    def queue_meta(self, queue: str) -> Op[dict[str, str]]:
        """The queue's meta hash; QueueNotFoundError if it was never created."""
        meta = yield cmd("hgetall", self.queue_keys(queue).meta)
        if not meta:
            raise QueueNotFoundError(queue)
        return meta

    def set_processor_name(self, queue: str, name: str) -> Op[None]:
        yield cmd("hset", self.queue_keys(queue).meta, "processor", name)

    def queue_names(self) -> Op[list[str]]:
        return sorted((yield cmd("smembers", self.keys.queues)))

    def set_paused(self, queue: str, paused: bool) -> Op[None]:
        qk = self.queue_keys(queue)
        exists, _, _ = yield Batch([
            cmd("exists", qk.meta),
            cmd("hset", qk.meta, "paused", "1" if paused else "0"),
            self._event(qk.events, {"event": (EventName.PAUSED if paused else EventName.RESUMED).value,
                                    "job_id": ""}),
        ], transaction=True)
        if not exists:
            yield cmd("delete", qk.meta)
            raise QueueNotFoundError(queue)

    def delete_queue(self, queue: str) -> Op[None]:
        qk = self.queue_keys(queue)
        yield cmd("srem", self.keys.queues, queue)
        yield cmd("delete", qk.meta)  # first: nothing new can be enqueued
        yield UnlinkMatching(qk.pattern)
        yield cmd("unlink", *self.broker_keys(qk))

    # ----------------------------------------------------------------------------- jobs in

    def enqueue_batch(self, queue: str, jobs: list[NewJob]) -> Op[list[Added]]:
        """Add up to BATCH_SIZE jobs in one script call; per job, `Added` (True: added; False: a
        job with that id existed; a str: the id of the job that stands for its dedup key)."""
        keys, args = self.enqueue_call(queue, jobs)
        result = yield Script("enqueue", keys, args)
        if not isinstance(result, list):
            interpret_reply("enqueue", result, queue)
        if result and result[0] == Reply.GROUP_FULL:
            raise GroupFullError(queue, result[1])
        return [enqueue_outcome(flag) for flag in result]

    def enqueue_call(self, queue: str, jobs: list[NewJob]) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of one `lua/enqueue.lua` call (also queued in a flow's MULTI)."""
        qk = self.queue_keys(queue)
        keys = [qk.meta, qk.index("waiting"), qk.index("delayed"), qk.parked, qk.events, *self.broker_keys(qk)]
        args: list[Any] = [now_ms(), *self.dispatch_args(queue), self.events_max_len, self.lease_ms]
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
                opts.group or "", ",".join(opts.limits),
            ]
        self._dedup_tail(qk, jobs, keys, args)
        keys += qk.group_keys
        return keys, args

    @staticmethod
    def _dedup_tail(qk: QueueKeys, jobs: list[NewJob], keys: list[str], args: list[Any]) -> None:
        """The dedup entries of an `enqueue_call` (see the header of ``lua/enqueue.lua``)."""
        entries = [(position, job.dedup) for position, job in enumerate(jobs) if job.dedup is not None]
        if entries:
            keys.append(qk.metrics)
            args.append(qk.job_key_prefix)
            for position, entry in entries:
                keys.append(qk.dedup(entry.key))
                args += entry.args(position)
        args.append(len(entries))

    def enqueue(self, queue: str, jobs: list[NewJob]) -> Op[list[Added]]:
        """`enqueue_batch` for each batch of BATCH_SIZE, in order."""
        added: list[Added] = []
        for start in range(0, len(jobs), BATCH_SIZE):
            added += yield from self.enqueue_batch(queue, jobs[start : start + BATCH_SIZE])
        return added

    # ----------------------------------------------------------------------------- worker side

    def start(self, queue: str, job_id: str, token: int, worker_id: str, hostname: str,
              lock_ms: int, limiter: RateLimit | None, concurrency: int | None = None) -> Op[StartResult]:
        """Claim a received dispatch of a job; see `lua/start.lua` for the outcomes. A job that
        takes named limiters is claimed in a second call that gives their caps."""
        qk = self.queue_keys(queue)
        keys = [qk.job(job_id), qk.index("waiting"), qk.index("active"), qk.parked, qk.meta,
                qk.events, qk.lock(job_id), qk.limiter, qk.index("cancelled"), qk.dependents(job_id),
                qk.flowbox, qk.capped, *qk.group_keys]
        args = [job_id, token, now_ms(), worker_id, lock_ms, self.events_max_len,
                limiter.max if limiter else 0, limiter.duration if limiter else 0, hostname]
        cap_keys, cap_args = self.queue_cap(queue, job_id, concurrency)
        reply = yield Script("start", [*keys, *cap_keys], [*args, "0", *cap_args])
        if reply[0] == "limits":
            names = reply[1].split(",")
            maxima = yield from self.limiter_maxima(names)
            more_keys, more_args = self.limiter_caps(queue, job_id, names, maxima)
            reply = yield Script("start", [*keys, *cap_keys, *more_keys], [*args, "1", *cap_args, *more_args])
        if reply[0] != "active":
            return StartResult(reply[0])
        fields = dict(zip(reply[1::2], reply[2::2]))
        if "group" in fields:  # its message left the group window: the next grouped job may go
            yield from self.release_groups(queue)
        return StartResult("active", job_from_hash(queue, job_id, fields))

    # ------------------------------------------------------------------ concurrency caps, groups

    def queue_cap(self, queue: str, job_id: str, concurrency: int | None) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV (name, lease member, max) of the queue's own cap, if it has one."""
        if concurrency is None:
            return [], []
        return [self.queue_keys(queue).slots], [QUEUE_CAP, job_id, concurrency]

    def limiter_caps(self, queue: str, job_id: str, names: Iterable[str],
                     maxima: dict[str, int] | None = None) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV (name, lease member, max) of a job's named limiters; a job's lease
        member in a limiter is the queue and the job id joined by a NUL (limiters are shared by queues)."""
        keys: list[str] = []
        args: list[Any] = []
        for name in names:
            keys.append(self.keys.limiter_slots(name))
            args += [name, f"{queue}\0{job_id}", (maxima or {}).get(name, 0)]
        return keys, args

    def lease_keys(self, queue: str, job_id: str, group: str | None,
                   limits: Iterable[str]) -> tuple[tuple[str, str], ...]:
        """(lease set, member) of every lease a running job may hold: the queue's slot, its
        group's, its named limiters'. Renewing or dropping one it does not hold changes nothing."""
        qk = self.queue_keys(queue)
        leases = [(qk.slots, job_id)]
        if group:
            leases.append((qk.group_slots, f"{group}\0{job_id}"))
        leases += [(self.keys.limiter_slots(name), f"{queue}\0{job_id}") for name in limits]
        return tuple(leases)

    def limiter_maxima(self, names: list[str]) -> Op[dict[str, int]]:
        """The max_concurrent of named limiters; InvalidArgumentError naming ``limits`` for an unknown one."""
        values = yield cmd("hmget", self.keys.limiters, names)
        unknown = [name for name, value in zip(names, values) if value is None]
        if unknown:
            raise InvalidArgumentError(f"limits: no limiter named {', '.join(map(repr, unknown))}; "
                                       "create it with set_limiter()")
        return {name: int(value) for name, value in zip(names, values)}

    def release_groups(self, queue: str, rejoin: str = "") -> Op[int]:
        """Release grouped jobs round-robin while the queue's group window has room (see
        `lua/group_release.lua`); ``rejoin``: a group that may be served again first."""
        qk = self.queue_keys(queue)
        return (yield Script("group_release", [qk.meta, *self.broker_keys(qk), *qk.group_keys],
                             [now_ms(), self.lease_ms, rejoin]))

    def renew_locks(self, attempts: Iterable[tuple[str, str, int, tuple[tuple[str, str], ...]]],
                    lock_ms: int) -> Op[list[str]]:
        """Renew the locks of running attempts, given as (queue, job id, token, leases: (lease
        set, member) pairs, see `lease_keys`), with their leases, in one round trip; per attempt
        "" if it still owns its job, else ``<state>:<reason>`` of the job."""
        by_queue: dict[str, list[tuple[int, str, int, tuple[tuple[str, str], ...]]]] = {}
        for position, (queue, job_id, token, leases) in enumerate(attempts):
            by_queue.setdefault(queue, []).append((position, job_id, token, leases))
        scripts: list[Command | Script] = []
        now = now_ms()
        for queue, items in by_queue.items():
            qk = self.queue_keys(queue)
            keys: list[str] = []
            args: list[Any] = [lock_ms, now]
            for _, job_id, token, leases in items:
                keys += [qk.lock(job_id), qk.job(job_id), *(key for key, _ in leases)]
                args += [token, len(leases), *(member for _, member in leases)]
            scripts.append(Script("renew", keys, args))
        out = [""] * sum(len(items) for items in by_queue.values())
        if not scripts:
            return out
        for items, replies in zip(by_queue.values(), (yield Batch(scripts))):
            for (position, _, _, _), reply in zip(items, replies):
                out[position] = reply
        return out

    def finish(self, queue: str, job_id: str, token: int, outcome: str, *, payload: str = "",
               stack: str = "", due_ms: int = 0, remove: bool = False, duration_ms: int = 0,
               group: str | None = None, limits: Iterable[str] = ()) -> Op[bool]:
        """End an attempt: ``completed`` (payload = result JSON), ``failed`` or ``retry``
        (payload = reason). False when this attempt no longer owns the job. The attempt's
        leases are dropped; a grouped job's finish releases the next grouped jobs."""
        qk = self.queue_keys(queue)
        now = now_ms()
        keys = [qk.job(job_id), qk.index("active"), qk.index("completed"), qk.index("failed"),
                qk.index("delayed"), qk.events, qk.lock(job_id), qk.metrics, qk.logs(job_id),
                qk.dependents(job_id), qk.flowbox, *qk.group_keys, qk.slots]
        args = [job_id, token, outcome, now, payload, stack, due_ms, "1" if remove else "0",
                self.events_max_len, minute_of(now), duration_ms, processing_bucket(duration_ms),
                group or "", QUEUE_CAP, job_id, 0]
        limit_keys, limit_args = self.limiter_caps(queue, job_id, limits)
        keys += limit_keys
        args += limit_args
        # A finished attempt outlives a short Redis outage rather than run again; repeating the
        # script is safe, since a second call finds the job no longer owned (fencing by token).
        deadline = time.monotonic() + self.finish_retry_s
        while True:
            try:
                reply = yield Script("finish", keys, args)
            except RedisUnavailableError:
                if time.monotonic() >= deadline:
                    raise
                yield Sleep(FINISH_RETRY_PAUSE_S)
                continue
            if group and reply != Reply.REFUSED:
                yield from self.release_groups(queue)
            if isinstance(reply, list):  # a flow hand-off was written: apply it now
                self._handed_off(queue, reply)
                return True
            return interpret_reply("finish", reply, queue, job_id)

    def update_progress(self, queue: str, job_id: str, token: int | None, progress: Any) -> Op[bool]:
        qk = self.queue_keys(queue)
        encoded = encode_json(progress, "progress", MAX_PROGRESS_SIZE)
        reply = yield Script("progress", [qk.job(job_id), qk.events], [job_id, token, encoded, self.events_max_len])
        return bool(reply == Reply.DONE)

    def add_log(self, queue: str, job_id: str, line: str) -> Op[None]:
        qk = self.queue_keys(queue)
        yield Batch([
            cmd("rpush", qk.logs(job_id), str(line)[:MAX_LOG_LINE]),
            cmd("ltrim", qk.logs(job_id), -MAX_LOG_LINES, -1),
        ], transaction=True)

    def record_poison(self, queue: str, raw: bytes | str, reason: str) -> Op[str]:
        """Record a message that could not be run (undecodable, pickle, unknown task) as a failed
        job, so it shows in the dead-letter list instead of vanishing; returns its id."""
        qk = self.queue_keys(queue)
        job_id = f"poison-{uuid.uuid4()}"
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        now = now_ms()
        yield Batch([
            cmd("hset", qk.job(job_id), mapping={
                "name": "poison-message", "data": json.dumps(text[:MAX_LOG_LINE]), "state": "failed",
                "attempts": 0, "created": now, "finished": now, "reason": reason[:MAX_LOG_LINE],
            }),
            cmd("zadd", qk.index("failed"), {job_id: now}),
            *(cmd("hincrby", qk.metrics, field, 1) for field in outcome_fields(FAILED, now)),
            self._event(qk.events, {"event": "failed", "job_id": job_id, "reason": reason[:1000]}),
        ], transaction=True)
        return job_id

    def emit_worker_event(self, queue: str, action: WorkerAction, worker_id: str, **fields: Any) -> Op[None]:
        """Append a ``worker`` event (`WorkerAction`: crashed, restarted, gave_up) to the queue's stream."""
        entry = {"event": EventName.WORKER.value, "job_id": "", "action": action.value, "worker": worker_id}
        entry.update({name: str(value) for name, value in fields.items() if value is not None})
        yield self._event(self.queue_keys(queue).events, entry)

    # ----------------------------------------------------------------------------- job control

    def job_state_token(self, queue: str, job_id: str) -> Op[tuple[str | None, str | None]]:
        """The job's state and dispatch token (the id of its running Celery task is ``id.token``)."""
        state, token = yield cmd("hmget", self.queue_keys(queue).job(job_id), "state", "token")
        return state, token

    def cancel(self, queue: str, job_id: str, allow_active: bool = False, reason: str = "cancelled") -> Op[bool]:
        qk = self.queue_keys(queue)
        group, limits = yield cmd("hmget", qk.job(job_id), "group", "limits")
        names = limits.split(",") if limits else []
        limit_keys, limit_args = self.limiter_caps(queue, job_id, names)
        reply = yield Script(
            "cancel",
            [qk.job(job_id), qk.index("waiting"), qk.index("delayed"), qk.parked,
             qk.index("active"), qk.index("cancelled"), qk.events, qk.lock(job_id),
             qk.index("waiting_children"), qk.dependents(job_id), qk.flowbox, qk.capped, *qk.group_keys,
             qk.slots, *limit_keys],
            [job_id, now_ms(), "1" if allow_active else "0", self.events_max_len, reason, group or "",
             QUEUE_CAP, job_id, 0, *limit_args],
        )
        if isinstance(reply, list):
            self._handed_off(queue, reply)
            reply = Reply.DONE
        done = interpret_reply("cancel", reply, queue, job_id)
        if done and group:
            yield from self.release_groups(queue)
        return done

    def remove(self, queue: str, job_id: str) -> Op[bool]:
        """Delete a finished (completed, failed or cancelled) job with its logs; False if it is
        not finished. The script removes it only if it is still in that state's index."""
        qk = self.queue_keys(queue)
        state = yield cmd("hget", qk.job(job_id), "state")
        if state is None:
            raise JobNotFoundError(queue, job_id)
        if not JobState(state).is_final:
            return False
        return (yield Script("remove_finished", [qk.index(state), qk.job(job_id), qk.logs(job_id)], [job_id])) == 1

    def retry(self, queue: str, job_id: str) -> Op[bool]:
        qk = self.queue_keys(queue)
        reply = yield Script(
            "retry",
            [qk.job(job_id), qk.index("failed"), qk.index("cancelled"), qk.index("waiting"),
             qk.parked, qk.meta, qk.events, *self.broker_keys(qk), *qk.group_keys],
            [job_id, now_ms(), *self.dispatch_args(queue), self.events_max_len],
        )
        done = interpret_reply("retry", reply, queue, job_id)
        if done:
            yield from self.release_groups(queue)
        return done

    def change_priority(self, queue: str, job_id: str, priority: int) -> Op[bool]:
        qk = self.queue_keys(queue)
        reply = yield Script(
            "change_priority",
            [qk.job(job_id), qk.parked, qk.meta, qk.events, *self.broker_keys(qk), *qk.group_keys],
            [job_id, priority, now_ms(), *self.dispatch_args(queue), self.events_max_len],
        )
        return interpret_reply("change_priority", reply, queue, job_id)

    def promote(self, queue: str, job_id: str) -> Op[bool]:
        """Move one delayed job to waiting now."""
        if not (yield cmd("exists", self.queue_keys(queue).job(job_id))):
            raise JobNotFoundError(queue, job_id)
        return (yield from self.promote_ids(queue, [job_id], force=True)) == 1

    def promote_ids(self, queue: str, job_ids: list[str], force: bool) -> Op[int]:
        qk = self.queue_keys(queue)
        return (yield Script(
            "promote",
            [qk.index("delayed"), qk.index("waiting"), qk.parked, qk.meta, qk.events,
             *self.broker_keys(qk), qk.index("cancelled"), qk.flowbox,
             *(key for job_id in job_ids for key in (qk.job(job_id), qk.dependents(job_id))), *qk.group_keys],
            [now_ms(), "1" if force else "0", *self.dispatch_args(queue), self.events_max_len, *job_ids],
        ))

    # ----------------------------------------------------------------------------- reads

    def get_job(self, queue: str, job_id: str) -> Op[Job | None]:
        return (yield from self._read_job(queue, job_id, with_last_event=False))[0]

    def get_job_after_event(self, queue: str, job_id: str) -> Op[tuple[Job | None, str]]:
        """The job, and the id of the queue's last event before it was read, in one round trip:
        a wait for the events after that id misses no change of the job."""
        return (yield from self._read_job(queue, job_id, with_last_event=True))

    def _read_job(self, queue: str, job_id: str, with_last_event: bool) -> Op[tuple[Job | None, str]]:
        qk = self.queue_keys(queue)
        head = [cmd("xrevrange", qk.events, count=1)] if with_last_event else []
        replies = yield Batch([*head, cmd("hgetall", qk.job(job_id)), cmd("lrange", qk.logs(job_id), 0, -1)])
        fields, logs = replies[-2:]
        last_id = replies[0][0][0] if with_last_event and replies[0] else "0-0"
        if not fields:
            return None, last_id
        return job_from_hash(queue, job_id, fields, logs), last_id

    def get_jobs_by_id(self, queue: str, job_ids: list[str]) -> Op[list[Job | None]]:
        """The jobs of the given ids (None where there is none), in one round trip."""
        if not job_ids:
            return []
        qk = self.queue_keys(queue)
        replies = yield Batch([c for job_id in job_ids
                               for c in (cmd("hgetall", qk.job(job_id)), cmd("lrange", qk.logs(job_id), 0, -1))])
        return [job_from_hash(queue, job_id, fields, logs) if fields else None
                for job_id, fields, logs in zip(job_ids, replies[0::2], replies[1::2])]

    def get_jobs(self, queue: str, states: Iterable[JobState | str], start: int = 0, end: int = -1,
                 asc: bool = False) -> Op[list[Job]]:
        """Jobs in the given states, newest first (or oldest first), sliced like a Redis range."""
        qk = self.queue_keys(queue)
        states = [JobState(state).value for state in states]
        if len(states) == 1:
            ids = yield cmd("zrange" if asc else "zrevrange", qk.index(states[0]), start, end)
        else:
            replies = yield Batch([cmd("zrange", qk.index(state), 0, -1, withscores=True) for state in states])
            scored = [pair for pairs in replies for pair in pairs]
            scored.sort(key=lambda pair: pair[1], reverse=not asc)
            ordered = [job_id for job_id, _ in scored]
            ids = ordered[start:] if end == -1 else ordered[start : end + 1]
        # a job removed between the two reads is left out
        return [job for job in (yield from self.get_jobs_by_id(queue, ids)) if job is not None]

    def counts(self, queue: str) -> Op[QueueCounts]:
        """Jobs per state: one ZCARD each, in one round trip; O(1) whatever the queue's size."""
        qk = self.queue_keys(queue)
        replies = yield Batch([cmd("zcard", qk.index(state)) for state in STATE_INDEXES])
        return QueueCounts(**dict(zip(STATE_INDEXES, replies)))

    def has_backlog(self, queue: str) -> Op[bool]:
        """Messages wait in the queue's broker lists and the queue is not paused (one round trip)."""
        qk = self.queue_keys(queue)
        paused, *lengths = yield Batch([cmd("hget", qk.meta, "paused"), *(cmd("llen", key) for key in qk.broker_lists)])
        return paused != "1" and sum(lengths) > 0

    def last_event_id(self, queue: str) -> Op[str]:
        entries = yield cmd("xrevrange", self.queue_keys(queue).events, count=1)
        return entries[0][0] if entries else "0-0"

    def read_events(self, queue: str, after_id: str, block_ms: int | None, count: int = 500
                    ) -> Op[list[tuple[str, dict[str, str]]]]:
        """Events after ``after_id``, waiting up to ``block_ms`` for the first one."""
        reply = yield cmd("xread", {self.queue_keys(queue).events: after_id}, count=count, block=block_ms)
        return reply[0][1] if reply else []

    def read_queues_events(self, positions: dict[str, str], block_ms: int, count: int = 500
                           ) -> Op[list[tuple[str, str, dict[str, str]]]]:
        """Events of several queues after each one's id, in one read waiting up to ``block_ms``
        for the first: (queue, event id, fields) in stream order per queue."""
        stream_queue = {self.queue_keys(queue).events: queue for queue in positions}
        reply = yield cmd("xread", {stream: positions[queue] for stream, queue in stream_queue.items()},
                          count=count, block=block_ms)
        return [(stream_queue[stream], entry_id, fields) for stream, entries in reply or []
                for entry_id, fields in entries]

    def hash_fields(self, key: str, fields: list[str]) -> Op[list[str | None]]:
        """HMGET of one record's fields (metrics windows, heartbeats)."""
        return (yield cmd("hmget", key, fields))

    def trim(self, queue: str, retention: Retention, keep_completed: int | None = None) -> Op[int]:
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
                excess = (yield cmd("zcard", index)) - keep
                victims: list[str] = (yield cmd("zrange", index, 0, min(excess, BATCH_SIZE) - 1)) if excess > 0 else []
                if age_s is not None:
                    victims += yield cmd("zrangebyscore", index, "-inf", now - age_s * 1000, start=0, num=BATCH_SIZE)
                victims = list(dict.fromkeys(victims))
                if not victims:
                    break
                keys = [index]
                for job_id in victims:
                    keys += [qk.job(job_id), qk.logs(job_id), *qk.flow_keys(job_id)]
                done = yield Script("remove_finished", keys, victims)
                removed += done
                if done == 0 or len(victims) < BATCH_SIZE:
                    break
        return removed
