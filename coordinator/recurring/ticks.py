"""When a recurring job fires: its ticks, from a 5-field cron in a named zone or every N ms.

Ticks are instants computed from the pattern alone, never from when a beat happened to run, so
every beat agrees on them and a tick's time can name the job it creates. Cron runs on croniter
in the zone's wall-clock time: a time skipped by a daylight-saving change fires at the first
instant after the gap (02:30 on a spring-forward night fires at 03:00), and a wall-clock time
that happens twice fires once unless the hour field is ``*`` (then each real hour fires), as
Vixie cron does. ``every`` ticks fall on ``start_date + k * every`` (the epoch without a start).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from celery.schedules import BaseSchedule, schedstate
from croniter import croniter

from coordinator.registry.codec import from_ms, to_ms

#: How far back of croniter's rough previous tick the exact search starts (beyond any DST shift).
_LOOKBACK = timedelta(hours=3)
_EPSILON = timedelta(microseconds=1)


class TickSchedule(BaseSchedule):
    """The ticks of one recurring job, as a Celery schedule that redbeat stores and loads."""

    def __init__(self, cron: str | None = None, every: int | None = None, tz: str = "UTC",
                 start_ms: int | None = None, end_ms: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if (cron is None) == (every is None):
            raise ValueError("cron, every: give exactly one of them")
        self.cron = cron
        self.every = every
        self.zone = ZoneInfo(tz)
        self.start_ms = start_ms
        self.end_ms = end_ms
        self._repeats_hourly = cron is not None and cron.split()[1] == "*"

    # ----------------------------------------------------------------------------- ticks

    def next_tick(self, after: datetime) -> datetime | None:
        """The first tick strictly after ``after``, or None when the schedule has ended."""
        if self.start_ms is not None:
            after = max(after, from_ms(self.start_ms) - _EPSILON)
        tick = self._next_every(after, self.every) if self.every is not None else self._next_cron(after)
        if self.end_ms is not None and to_ms(tick) > self.end_ms:
            return None
        return tick

    def latest_tick(self, now: datetime, after: datetime) -> datetime | None:
        """The last tick in (``after``, ``now``]: the one run owed, however many were missed."""
        if self.end_ms is not None:
            now = min(now, from_ms(self.end_ms))
        start = after
        if self.cron is not None:
            start = max(after, self._rough_previous(now) - _LOOKBACK)
        elif self.every is not None:
            start = max(after, now - timedelta(milliseconds=self.every))
        latest = None
        tick = self.next_tick(start)
        while tick is not None and tick <= now:
            latest = tick
            tick = self.next_tick(tick)
        return latest

    def ticks_between(self, first: datetime, last: datetime, most: int) -> list[datetime]:
        """The ticks in [``first``, ``last``], oldest first, at most ``most`` of them."""
        ticks: list[datetime] = []
        tick = self.next_tick(first - _EPSILON)
        while tick is not None and tick <= last and len(ticks) < most:
            ticks.append(tick)
            tick = self.next_tick(tick)
        return ticks

    def _next_every(self, after: datetime, every: int) -> datetime:
        anchor = self.start_ms or 0
        steps = (to_ms(after) - anchor) // every + 1
        tick = from_ms(anchor + steps * every)
        return tick if tick > after else from_ms(anchor + (steps + 1) * every)

    def _next_cron(self, after: datetime) -> datetime:
        """croniter walks naive wall-clock times (its zone handling differs between versions);
        each wall-clock tick becomes an instant here, with the DST rules of the module docstring."""
        local = after.astimezone(self.zone)
        ahead = (after + _LOOKBACK).astimezone(self.zone)
        back = max(timedelta(0), local.utcoffset() - ahead.utcoffset())  # type: ignore[operator]
        it = croniter(self.cron, local.replace(tzinfo=None) - back)  # a repeated hour ahead: see it twice
        while True:
            for tick in self._instants(it.get_next(datetime)):
                if tick > after:
                    return tick

    def _instants(self, wall: datetime) -> list[datetime]:
        """The instants (UTC) a wall-clock tick fires at: one; two in a repeated hour for an hourly
        pattern; the end of the gap for a skipped time, or none for an hourly pattern."""
        first, second = (wall.replace(tzinfo=self.zone, fold=fold).astimezone(timezone.utc) for fold in (0, 1))
        if first.astimezone(self.zone).replace(tzinfo=None) != wall:  # skipped by a spring-forward change
            return [] if self._repeats_hourly else [self._gap_end(second, first)]
        if first != second and self._repeats_hourly:  # a repeated wall-clock time: each real hour
            return sorted((first, second))
        return [min(first, second)]

    def _gap_end(self, low: datetime, high: datetime) -> datetime:
        """The first whole minute in [low, high] whose wall-clock time comes after the gap."""
        tick = low
        while tick < high and tick.astimezone(self.zone).utcoffset() == low.astimezone(self.zone).utcoffset():
            tick += timedelta(minutes=1)
        return tick

    def _rough_previous(self, now: datetime) -> datetime:
        """croniter's previous wall-clock tick as an instant: near the true one, not exact across a
        DST change (the exact search starts _LOOKBACK before it)."""
        try:
            wall: datetime = croniter(self.cron, (now + _EPSILON).astimezone(self.zone).replace(tzinfo=None)
                                      ).get_prev(datetime)
            return wall.replace(tzinfo=self.zone).astimezone(timezone.utc)
        except ValueError:  # croniter's CroniterError (a ValueError; not exported before 2.0.2)
            return now - _LOOKBACK

    # ----------------------------------------------------------------------------- Celery schedule API

    def remaining_estimate(self, last_run_at: datetime) -> timedelta | None:
        tick = self.next_tick(last_run_at)
        return None if tick is None else tick - datetime.now(timezone.utc)

    def is_due(self, last_run_at: datetime) -> schedstate:
        """Due when a tick passed since ``last_run_at``; else the seconds until the next one."""
        now = datetime.now(timezone.utc)
        if self.latest_tick(now, last_run_at) is not None:
            return schedstate(True, self.seconds_to_next(now))
        return schedstate(False, self.seconds_to_next(max(now, last_run_at)))

    def seconds_to_next(self, after: datetime) -> float | None:
        tick = self.next_tick(after)
        return None if tick is None else max((tick - datetime.now(timezone.utc)).total_seconds(), 0.0)

    # ----------------------------------------------------------------------------- storage

    def to_dict(self) -> dict[str, Any]:
        return {"cron": self.cron, "every": self.every, "tz": self.zone.key, "start_ms": self.start_ms,
                "end_ms": self.end_ms}

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> TickSchedule:
        return cls(**{name: fields.get(name) for name in ("cron", "every", "start_ms", "end_ms")},
                   tz=fields.get("tz") or "UTC")

    @property
    def pattern(self) -> str:
        return self.cron if self.cron is not None else f"every {self.every} ms"

    def __repr__(self) -> str:
        return f"<TickSchedule {self.pattern} tz={self.zone.key}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TickSchedule) and other.to_dict() == self.to_dict()

    def __hash__(self) -> int:
        return hash(tuple(self.to_dict().items()))
