"""Every Redis key and Celery queue name the coordinator uses is built here, and only here.

A queue's keys share the hash tag ``{queue}`` so that they live on one Redis Cluster slot and a
Lua script may touch all of them. The Celery queue (the broker list kombu reads) carries the same
tag, so the scripts that move a job to waiting can push its Celery message in the same step.
"""

from __future__ import annotations

from dataclasses import dataclass

#: kombu's separator between a queue name and its priority level in the Redis transport.
KOMBU_PRIORITY_SEP = "\x06\x16"
#: Priority levels of the Redis transport (0 is the highest); one list per level.
KOMBU_PRIORITY_LEVELS = tuple(range(10))

#: Job states that have an index of their own (a sorted set per queue).
STATE_INDEXES = ("waiting", "active", "delayed", "completed", "failed", "cancelled", "waiting_children")


@dataclass(frozen=True)
class QueueKeys:
    """Key names of one coordinator queue."""

    prefix: str
    queue: str

    @property
    def base(self) -> str:
        return f"{self.prefix}:{{{self.queue}}}"

    @property
    def celery_queue(self) -> str:
        """The Celery queue (and routing key) that carries this queue's jobs."""
        return self.base

    def broker_list(self, kombu_priority: int) -> str:
        """The kombu Redis list that holds messages of one priority level."""
        if kombu_priority == 0:
            return self.celery_queue
        return f"{self.celery_queue}{KOMBU_PRIORITY_SEP}{kombu_priority}"

    @property
    def broker_lists(self) -> list[str]:
        return [self.broker_list(level) for level in KOMBU_PRIORITY_LEVELS]

    @property
    def outbox(self) -> str:
        """List of Celery messages waiting to be published to a broker other than this Redis."""
        return f"{self.base}:outbox"

    @property
    def relaying(self) -> str:
        """Sorted set of outbox messages a relay has claimed, by claim time (ms)."""
        return f"{self.base}:relaying"

    @property
    def meta(self) -> str:
        """Hash: the queue's config (JSON), paused flag, creation time."""
        return f"{self.base}:meta"

    def index(self, state: str) -> str:
        """Sorted set of the job ids in one state, scored by the time they entered it (ms);
        for ``delayed``, by the time they are due."""
        return f"{self.base}:{state}"

    @property
    def parked(self) -> str:
        """Sorted set of waiting jobs held back while the queue is paused."""
        return f"{self.base}:parked"

    @property
    def events(self) -> str:
        """Capped stream of the queue's job events."""
        return f"{self.base}:events"

    @property
    def metrics(self) -> str:
        """Hash of per-minute counters: ``<minute>:c`` completed, ``:f`` failed, ``:t`` ms; and
        since the queue began: ``all:c``, ``all:f``, ``all:t`` and ``all:le:<ms>`` histogram buckets."""
        return f"{self.base}:metrics"

    @property
    def limiter(self) -> str:
        """Sorted set of the start times inside the current rate-limit window."""
        return f"{self.base}:limiter"

    def job(self, job_id: str) -> str:
        return f"{self.base}:job:{job_id}"

    # Deduplication (see coordinator/dedup.py): per queue, so a key is scoped to its queue.
    @property
    def job_key_prefix(self) -> str:
        """`job` of an id is this and the id (enqueue.lua reads a standing job through it)."""
        return self.job("")

    def dedup(self, key: str) -> str:
        """String: the id of the job that stands for a dedup key (a TTL in mode ``ttl``)."""
        return f"{self.base}:dedup:{key}"

    def lock(self, job_id: str) -> str:
        """String with a TTL, renewed by the worker running the job; gone means stalled."""
        return f"{self.base}:lock:{job_id}"

    def logs(self, job_id: str) -> str:
        return f"{self.base}:logs:{job_id}"

    # Flows (see coordinator/flows): a waiting job's dependencies and their outcomes, a job's
    # waiters, and the queue's hand-off box. All in the queue's slot, like the job itself.
    def pending(self, job_id: str) -> str:
        """Set of the refs (``queue:id``, ``@b:<batch>``) a waiting_children job still waits for."""
        return f"{self.base}:pending:{job_id}"

    def children(self, job_id: str) -> str:
        """Set of every dependency ref of a job (its flow children, its ``depends_on``)."""
        return f"{self.base}:children:{job_id}"

    def child_values(self, job_id: str) -> str:
        """Hash: dependency ref -> result JSON, of the dependencies that completed."""
        return f"{self.base}:values:{job_id}"

    def child_failures(self, job_id: str) -> str:
        """Hash: dependency ref -> reason, of the failed dependencies the job goes on without."""
        return f"{self.base}:failures:{job_id}"

    def dependents(self, job_id: str) -> str:
        """Hash: waiter ref (a parent, a dependent job, a batch) -> failure policy."""
        return f"{self.base}:dependents:{job_id}"

    @property
    def flowbox(self) -> str:
        """Hash of hand-offs: a finished job's outcome for its waiters, written in the step that
        finished it and removed once every waiter applied it (see `coordinator/flows/handoff.py`)."""
        return f"{self.base}:flowbox"

    def flow_keys(self, job_id: str) -> list[str]:
        """The flow records of one job, removed with it."""
        return [self.pending(job_id), self.children(job_id), self.child_values(job_id),
                self.child_failures(job_id), self.dependents(job_id)]

    # Groups and concurrency caps (see coordinator/groups.py and lua/_groups.lua). A group has no
    # key of its own: each record below holds every group of the queue, so the scripts take a
    # fixed set of KEYS whatever the group. Members that name a group join it to the rest with
    # a NUL byte (group names have no control characters).
    @property
    def group_configs(self) -> str:
        """Hash: group -> `GroupConfig` JSON, of the groups given a config."""
        return f"{self.base}:g:config"

    @property
    def group_paused(self) -> str:
        """Set of the paused groups."""
        return f"{self.base}:g:paused"

    @property
    def group_waiting(self) -> str:
        """Sorted set (all scores 0, ordered by member): ``<group>\0<priority:02>\0<enqueue ms>\0<job id>``
        of the grouped jobs waiting to be released to the broker."""
        return f"{self.base}:g:waiting"

    @property
    def group_messages(self) -> str:
        """Hash: job id -> the Celery message of a grouped waiting job (its kombu priority level
        digit first), pushed to the broker as it is when the round-robin releases the job."""
        return f"{self.base}:g:messages"

    @property
    def group_counts(self) -> str:
        """Hash: group -> how many of its jobs wait in `group_waiting`."""
        return f"{self.base}:g:counts"

    @property
    def group_sizes(self) -> str:
        """Hash: group -> its waiting jobs, in its index or released and not started (what
        ``max_size`` bounds and `get_queue_status` shows)."""
        return f"{self.base}:g:sizes"

    @property
    def group_rotation(self) -> str:
        """Sorted set of the groups that may be served, by pass (the round-robin's virtual time;
        a group served one job moves 1/weight on)."""
        return f"{self.base}:g:rotation"

    @property
    def group_held(self) -> str:
        """Sorted set of groups out of the rotation until their rate-limit window ends (ms)."""
        return f"{self.base}:g:held"

    @property
    def group_window(self) -> str:
        """Sorted set of grouped jobs released to the broker and not yet received, by release time (ms)."""
        return f"{self.base}:g:window"

    @property
    def group_slots(self) -> str:
        """Sorted set of group concurrency leases ``<group>\0<job id>``, by expiry (ms)."""
        return f"{self.base}:g:slots"

    @property
    def group_active(self) -> str:
        """Hash: group -> how many leases it holds in `group_slots`."""
        return f"{self.base}:g:active"

    @property
    def group_rates(self) -> str:
        """Hash: group -> ``<window start ms>:<jobs released in it>`` (a group's rate limit)."""
        return f"{self.base}:g:rates"

    @property
    def group_keys(self) -> list[str]:
        """The group records in the order `lua/_groups.lua` takes them (its ``groupKeys``)."""
        return [self.group_configs, self.group_paused, self.group_waiting, self.group_messages,
                self.group_counts, self.group_rotation, self.group_held, self.group_window,
                self.group_slots, self.group_active, self.group_rates, self.group_sizes]

    @property
    def slots(self) -> str:
        """Sorted set of the queue's concurrency leases (`QueueConfig.concurrency`): job id -> expiry (ms)."""
        return f"{self.base}:slots"

    @property
    def capped(self) -> str:
        """Sorted set of waiting jobs parked over a concurrency cap, in arrival order."""
        return f"{self.base}:capped"

    @property
    def pattern(self) -> str:
        """SCAN pattern of every key of this queue except the broker lists."""
        return f"{self.base}:*"


@dataclass(frozen=True)
class BatchKeys:
    """Key names of one batch; they share the hash tag ``{b:<id>}`` (one cluster slot)."""

    prefix: str
    batch_id: str

    @property
    def base(self) -> str:
        return f"{self.prefix}:{{b:{self.batch_id}}}"

    @property
    def meta(self) -> str:
        """Hash: counts, sealed/done flags, callback and parent refs (`flows/records.py`)."""
        return f"{self.base}:meta"

    @property
    def pending(self) -> str:
        """Set of the refs of members not finished yet, and ``@seal`` until the batch is sealed."""
        return f"{self.base}:pending"

    @property
    def members(self) -> str:
        """Set of the refs of every member."""
        return f"{self.base}:members"

    @property
    def failures(self) -> str:
        """Hash: member ref -> reason, of failed members."""
        return f"{self.base}:failures"

    @property
    def all(self) -> list[str]:
        return [self.meta, self.pending, self.members, self.failures]


@dataclass(frozen=True)
class CoordinatorKeys:
    """Key names shared by all queues of one prefix."""

    prefix: str

    @property
    def queues(self) -> str:
        """Set of the queue names that exist."""
        return f"{self.prefix}:queues"

    @property
    def epoch(self) -> str:
        """String written once when the first queue is created; if it vanishes while queues are
        known, Redis lost the registry (restarted without persistence, flushed, evicted)."""
        return f"{self.prefix}:epoch"

    @property
    def workers(self) -> str:
        """Sorted set of worker ids by last heartbeat (ms)."""
        return f"{self.prefix}:workers"

    def worker(self, worker_id: str) -> str:
        """Hash: a worker's status, expiring when its heartbeat stops."""
        return f"{self.prefix}:worker:{worker_id}"

    def worker_paused(self, worker_id: str) -> str:
        return f"{self.prefix}:worker:{worker_id}:paused"

    @property
    def limiters(self) -> str:
        """Hash: named limiter -> its max_concurrent (`set_limiter`)."""
        return f"{self.prefix}:limiters"

    def limiter_slots(self, name: str) -> str:
        """Sorted set of a named limiter's leases: job lease member -> expiry (ms). Any queue's
        jobs take them, so it lives in a slot of its own (one Redis node; see docs/fairness.md)."""
        return f"{self.prefix}:{{lim:{name}}}:slots"

    def batch(self, batch_id: str) -> BatchKeys:
        return BatchKeys(self.prefix, batch_id)

    def for_queue(self, queue: str) -> QueueKeys:
        return QueueKeys(self.prefix, queue)

    # Celery and kombu keys that would otherwise be shared by everything on one Redis database.
    @property
    def unacked(self) -> str:
        return f"{self.prefix}:unacked"

    @property
    def unacked_index(self) -> str:
        return f"{self.prefix}:unacked_index"

    @property
    def unacked_mutex(self) -> str:
        return f"{self.prefix}:unacked_mutex"

    @property
    def control_exchange(self) -> str:
        return f"{self.prefix}.control"

    @property
    def event_exchange(self) -> str:
        return f"{self.prefix}.events"

    @property
    def result_prefix(self) -> str:
        return f"{self.prefix}:celery-task-meta-"

    @property
    def beat(self) -> str:
        """Base of the beat's keys (redbeat's key prefix is this and ``:``)."""
        return f"{self.prefix}:beat"

    # Recurring jobs (redbeat). redbeat names its own keys ``<key prefix>:schedule``, ``:statics``
    # and ``:lock``; with the key prefix ``<beat>:`` they start with ``<beat>::``, which no
    # entry key can (entry names start with a queue name).
    @property
    def beat_key_prefix(self) -> str:
        """redbeat's ``redbeat_key_prefix``: every schedule entry key starts with it."""
        return f"{self.beat}:"

    @property
    def beat_schedule(self) -> str:
        """redbeat's sorted set of entry keys by next run (epoch s; -1: never again)."""
        return f"{self.beat_key_prefix}:schedule"

    @property
    def beat_lock(self) -> str:
        """redbeat's lock: the one beat that holds it fires the ticks."""
        return f"{self.beat_key_prefix}:lock"

    def beat_entry_name(self, queue: str, key: str) -> str:
        """redbeat's entry name of a recurring job (its key is the key prefix + this name)."""
        return f"{queue}:{key}"

    def beat_entry(self, queue: str, key: str) -> str:
        """Hash: the redbeat entry of a recurring job (``definition``, ``meta``) and the
        coordinator's fields beside them (job name, data, options, limit, run count, last tick,
        recent ticks, revision)."""
        return f"{self.beat_key_prefix}{self.beat_entry_name(queue, key)}"

    @property
    def recurring_task(self) -> str:
        """The Celery task a schedule entry fires (a ``:`` that no queue name has: no clash
        with the processor task names ``<prefix>.<queue>``)."""
        return f"{self.prefix}:recurring"

    def task_name(self, queue: str) -> str:
        """The Celery task name of a queue's processor."""
        return f"{self.prefix}.{queue}"

    def queue_of(self, celery_queue: str) -> str | None:
        """The coordinator queue a Celery queue name carries, or None if it is not one of ours."""
        head = f"{self.prefix}:{{"
        if celery_queue.startswith(head) and celery_queue.endswith("}"):
            return celery_queue[len(head) : -1]
        return None
