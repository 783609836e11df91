"""A recurring job as a redbeat entry: its JSON form in Redis and the Lua scripts that move it.

redbeat stores an entry as a hash with ``definition`` (task, kwargs, schedule) and ``meta``
(last run) and indexes it in a sorted set by next run. The coordinator keeps its own fields in
the same hash (job name, data, options, run count, recent ticks), so one key is one schedule.
Our `TickSchedule` is a type redbeat does not know: the encoder and decoder here add it.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

import redis
from redbeat.decoder import RedBeatJSONDecoder, RedBeatJSONEncoder
from redbeat.schedulers import RedBeatSchedulerEntry, get_redis
from redis.commands.core import Script

from coordinator.models import RecurringJobOptions
from coordinator.recurring.ticks import TickSchedule

_TYPE = "jqc_ticks"


class EntryEncoder(RedBeatJSONEncoder):
    """redbeat's JSON (datetimes, Celery schedules) plus `TickSchedule`."""

    def default(self, obj: Any) -> Any:
        if isinstance(obj, TickSchedule):
            return {"__type__": _TYPE, **obj.to_dict()}
        return super().default(obj)


class EntryDecoder(RedBeatJSONDecoder):
    def dict_to_object(self, d: dict[str, Any]) -> Any:
        if d.get("__type__") == _TYPE:
            return TickSchedule.from_dict(d)
        return super().dict_to_object(d)


def encode(value: Any) -> str:
    return json.dumps(value, cls=EntryEncoder)


def decode(text: str | None) -> Any:
    return None if not text else json.loads(text, cls=EntryDecoder)


def meta_json(last_run_at: datetime) -> str:
    """redbeat's ``meta`` field: the last tick fired (or, before the first, when it was scheduled)."""
    return encode({"last_run_at": last_run_at})


def last_run_at(meta: str | None) -> datetime | None:
    return (decode(meta) or {}).get("last_run_at")


@cache
def _script_source(name: str) -> str:
    return (resources.files("coordinator.recurring") / "lua" / f"{name}.lua").read_text()


def script(client: redis.Redis, name: str) -> Script:
    """One of the recurring jobs' Lua scripts (``tick``, ``advance``) bound to ``client``."""
    return client.register_script(_script_source(name))


class RecurringEntry(RedBeatSchedulerEntry):
    """redbeat's entry, able to load `TickSchedule` and to record a fired tick safely."""

    def __init__(self, *args: Any, revision: str = "", misfire: str = "latest", misfire_window_ms: int = 0,
                 buffered: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.revision = revision
        """The entry's revision when loaded: every update bumps it (Celery copies the entry
        with all its attributes as keywords, hence keywords here)."""
        self.misfire = misfire
        self.misfire_window_ms = misfire_window_ms
        self.buffered = buffered
        """A tick kept by the ``buffer_one`` overlap policy until the previous run ends (0: none)."""

    @staticmethod
    def decode_definition(definition: str) -> dict[str, Any]:
        return json.loads(definition, cls=EntryDecoder)

    @classmethod
    def from_key(cls, key: str, app: Any = None) -> RecurringEntry:
        """As redbeat's, also reading the revision, so `advance` can tell if it was updated."""
        definition, meta, revision, opts, buffered = get_redis(app).hmget(
            key, "definition", "meta", "revision", "opts", "buffered")
        if not definition:
            raise KeyError(key)
        meta_fields = decode(meta) or {}
        policy = RecurringJobOptions.model_validate_json(opts) if opts else None
        entry = cls(app=app, total_run_count=meta_fields.get("total_run_count"), revision=revision or "",
                    misfire=policy.misfire if policy else "latest",
                    misfire_window_ms=policy.misfire_window_ms if policy else 0,
                    buffered=int(buffered or 0), **cls.decode_definition(definition))
        # Celery's entry defaults it to now; None means never run (redbeat reads it so)
        entry.last_run_at = meta_fields.get("last_run_at")  # type: ignore[assignment]
        return entry

    @property
    def is_recurring_job(self) -> bool:
        return isinstance(self.schedule, TickSchedule)

    def advance(self, tick: datetime, next_run: datetime | None) -> None:
        """Record ``tick`` as fired and ``next_run`` (None: never again) as the next run."""
        conf = self.app.redbeat_conf
        client = get_redis(self.app)
        score = -1 if next_run is None else int(next_run.timestamp())
        script(client, "advance")(keys=[self.key, conf.schedule_key],
                                  args=[meta_json(tick), score, self.revision])
        self.last_run_at = tick
