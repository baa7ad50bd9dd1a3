"""Local wall-clock times as instants, across clock changes: what a schedule's "10:00" means."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo


def wall_time(instant: datetime, zone: tzinfo) -> datetime:
    """What clocks in `zone` show at `instant` (aware), as a naive datetime."""
    return instant.astimezone(zone).replace(tzinfo=None)


def _first_second(low: datetime, high: datetime, reached: Callable[[datetime], bool]) -> datetime:
    """The first whole second after `low` (where `reached` is false) at which it is true, given
    that it is true at `high` and stays true once it is (clock changes fall on whole seconds)."""
    low = low.astimezone(UTC).replace(microsecond=0)  # aware arithmetic in a zone is wall time
    lo, hi = 0, math.ceil((high - low).total_seconds())
    while lo < hi:
        mid = (lo + hi) // 2
        if reached(low + timedelta(seconds=mid)):
            hi = mid
        else:
            lo = mid + 1
    return low + timedelta(seconds=lo)


def to_instant(local: datetime, zone: tzinfo) -> datetime:
    """The first instant (UTC) at which clocks in `zone` show `local` (naive) or a later time.

    A time shown twice (clocks going back) is its first occurrence; a time skipped (clocks going
    forward) is the instant of the change, so a 02:30 handoff in a zone that jumps from 02:00 to
    03:00 happens at 03:00. Both keep the mapping monotonic: a later wall time is never earlier.
    """
    first = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if wall_time(first, zone) == local:
        return first
    # Skipped: fold=0 reads it with the offset from before the change, which lands after it, and
    # fold=1 with the offset from after, which lands before it; the change lies in between.
    before = local.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return _first_second(before, first, lambda moment: wall_time(moment, zone) >= local)


def next_clock_change(start: datetime, end: datetime, zone: tzinfo) -> datetime | None:
    """The first instant in (start, end] at which `zone` changes its offset, if there is one.

    Meant for spans of a day or so, which hold at most one change in any zone.
    """
    offset = start.astimezone(zone).utcoffset()
    if end.astimezone(zone).utcoffset() == offset:
        return None
    return _first_second(start, end, lambda moment: moment.astimezone(zone).utcoffset() != offset)


def as_utc(instant: datetime) -> datetime:
    """The instant in UTC, where adding time is adding real time (in a zone it is wall time).

    A naive datetime is refused: which zone it is in depends on who asks.
    """
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("expected an aware datetime (with a time zone)")
    return instant.astimezone(UTC)
