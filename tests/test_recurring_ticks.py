"""Tick computations: cron in a named zone across daylight-saving changes, every N ms, dates.

Expected instants are written out by hand from the zones' rules (Europe/Berlin: CET->CEST on
2026-03-29 at 02:00, back on 2026-10-25 at 03:00; America/New_York: EST->EDT on 2026-03-08 at
02:00, back on 2026-11-01 at 02:00), not computed with the code under test.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from coordinator.recurring.ticks import TickSchedule
from coordinator.registry.codec import to_ms


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def ticks(schedule: TickSchedule, after: datetime, count: int) -> list[datetime]:
    out = []
    for _ in range(count):
        nxt = schedule.next_tick(after)
        assert nxt is not None
        out.append(nxt)
        after = nxt
    return out


@pytest.mark.parametrize(("cron", "tz", "after", "expected"), [
    # 09:00 Berlin: 08:00 UTC in winter, 07:00 UTC from the spring-forward day on.
    ("0 9 * * *", "Europe/Berlin", utc(2026, 3, 27, 12),
     [utc(2026, 3, 28, 8), utc(2026, 3, 29, 7), utc(2026, 3, 30, 7)]),
    # ... and back to 08:00 UTC on the fall-back day.
    ("0 9 * * *", "Europe/Berlin", utc(2026, 10, 23, 12),
     [utc(2026, 10, 24, 7), utc(2026, 10, 25, 8), utc(2026, 10, 26, 8)]),
    # 02:30 does not exist on 2026-03-29 in Berlin: it fires at 03:00 CEST (01:00 UTC).
    ("30 2 * * *", "Europe/Berlin", utc(2026, 3, 27, 12),
     [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)]),
    # 02:30 happens twice on 2026-10-25 in Berlin: a daily job fires once, at the first.
    ("30 2 * * *", "Europe/Berlin", utc(2026, 10, 23, 12),
     [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]),
    # An hourly job fires every real hour through the repeated one.
    ("30 * * * *", "Europe/Berlin", utc(2026, 10, 24, 23),
     [utc(2026, 10, 24, 23, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30), utc(2026, 10, 25, 2, 30)]),
    # ... and skips the hour that does not exist.
    ("30 * * * *", "Europe/Berlin", utc(2026, 3, 28, 23),
     [utc(2026, 3, 28, 23, 30), utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1, 30), utc(2026, 3, 29, 2, 30)]),
    # 09:00 New York: 14:00 UTC (EST), then 13:00 UTC (EDT) from 2026-03-08.
    ("0 9 * * *", "America/New_York", utc(2026, 3, 6, 20),
     [utc(2026, 3, 7, 14), utc(2026, 3, 8, 13), utc(2026, 3, 9, 13)]),
    # 01:30 New York happens twice on 2026-11-01: once, at 01:30 EDT (05:30 UTC).
    ("30 1 * * *", "America/New_York", utc(2026, 10, 30, 20),
     [utc(2026, 10, 31, 5, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]),
    # Weekdays are the zone's: Monday 00:15 in Tokyo is Sunday 15:15 UTC.
    ("15 0 * * 1", "Asia/Tokyo", utc(2026, 3, 1),
     [utc(2026, 3, 1, 15, 15), utc(2026, 3, 8, 15, 15)]),
])
def test_cron_next_ticks_in_a_zone(cron: str, tz: str, after: datetime, expected: list[datetime]) -> None:
    assert ticks(TickSchedule(cron=cron, tz=tz), after, len(expected)) == expected


@pytest.mark.parametrize(("cron", "now", "expected"), [
    # Across the fall-back hour the latest tick is the one next_tick gives, not croniter's get_prev.
    ("30 2 * * *", utc(2026, 10, 25, 1, 45), utc(2026, 10, 25, 0, 30)),
    ("30 * * * *", utc(2026, 10, 25, 1, 45), utc(2026, 10, 25, 1, 30)),
    ("0 9 * * *", utc(2026, 3, 29, 7, 0), utc(2026, 3, 29, 7, 0)),  # a tick at now counts
    ("0 9 * * *", utc(2026, 3, 29, 6, 59), utc(2026, 3, 28, 8, 0)),
])
def test_latest_tick_in_berlin(cron: str, now: datetime, expected: datetime) -> None:
    schedule = TickSchedule(cron=cron, tz="Europe/Berlin")
    assert schedule.latest_tick(now, after=now - timedelta(days=3)) == expected


def test_missed_ticks_collapse_into_the_latest() -> None:
    schedule = TickSchedule(cron="*/5 * * * *", tz="Europe/Berlin")
    now = utc(2026, 3, 29, 12, 7, 30)
    # Down for 3 days: one tick owed, the latest.
    assert schedule.latest_tick(now, after=now - timedelta(days=3)) == utc(2026, 3, 29, 12, 5)
    # Nothing owed since that tick.
    assert schedule.latest_tick(now, after=utc(2026, 3, 29, 12, 5)) is None


def test_every_is_aligned_to_the_epoch_or_start_date() -> None:
    every = TickSchedule(every=1000)
    assert every.next_tick(utc(2026, 1, 1, 0, 0, 0) + timedelta(milliseconds=300)) == utc(2026, 1, 1, 0, 0, 1)
    assert every.next_tick(utc(2026, 1, 1, 0, 0, 1)) == utc(2026, 1, 1, 0, 0, 2)  # strictly after
    start = utc(2026, 1, 1, 9, 0, 0) + timedelta(milliseconds=250)
    anchored = TickSchedule(every=7_200_000, start_ms=to_ms(start))
    assert anchored.next_tick(utc(2025, 12, 1)) == start  # nothing before the start date
    assert anchored.next_tick(start) == start + timedelta(hours=2)
    now = start + timedelta(hours=9)
    assert anchored.latest_tick(now, after=start) == start + timedelta(hours=8)


def test_end_date_ends_the_schedule() -> None:
    end = utc(2026, 5, 1, 0, 0, 3)
    schedule = TickSchedule(every=1000, end_ms=to_ms(end))
    assert schedule.next_tick(utc(2026, 5, 1, 0, 0, 2)) == end  # the end itself is a tick
    assert schedule.next_tick(end) is None
    assert schedule.latest_tick(utc(2026, 5, 2), after=utc(2026, 5, 1)) == end
    cron = TickSchedule(cron="0 9 * * *", tz="Europe/Berlin", start_ms=to_ms(utc(2026, 3, 29)),
                        end_ms=to_ms(utc(2026, 3, 30, 12)))
    assert ticks(cron, utc(2026, 3, 1), 2) == [utc(2026, 3, 29, 7), utc(2026, 3, 30, 7)]
    assert cron.next_tick(utc(2026, 3, 30, 7)) is None


def test_schedule_round_trips_through_its_stored_form() -> None:
    schedule = TickSchedule(cron="0 9 * * 1-5", tz="America/New_York", end_ms=123)
    assert TickSchedule.from_dict(schedule.to_dict()) == schedule
    assert TickSchedule.from_dict(schedule.to_dict()).zone.key == "America/New_York"
