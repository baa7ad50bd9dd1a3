"""Who is on call: rotations counted in local time, layers, overrides, and the coming handoffs."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from bridge.config.oncall import RotationConfig, ScheduleConfig
from bridge.rules import ALL_DAYS, Window, as_utc, to_instant, wall_time

HANDOFF_HORIZON = timedelta(days=366)  # how far next_handoffs looks for a change


@dataclass(frozen=True, slots=True)
class Handoff:
    """A change of who is on call: at this instant `before` hands over to `after`."""

    at: datetime  # UTC (a zone's repeated hour would make comparisons across zones unequal)
    before: tuple[str, ...]
    after: tuple[str, ...]


def _anchor(rotation: RotationConfig) -> datetime:
    return datetime.combine(rotation.start, rotation.handoff.time)


def _handoff(rotation: RotationConfig, zone: ZoneInfo, index: int) -> datetime:
    """The instant shift `index` starts: the anchor plus whole shifts, on the local clock."""
    return to_instant(_anchor(rotation) + index * rotation.shift, zone)


def _end(rotation: RotationConfig, zone: ZoneInfo) -> datetime | None:
    if rotation.end is None:
        return None
    return to_instant(datetime.combine(rotation.end, rotation.handoff.time), zone)


def _shift_index(rotation: RotationConfig, zone: ZoneInfo, instant: datetime) -> int | None:
    """The shift holding `instant`, or None outside the rotation's start and end."""
    end = _end(rotation, zone)
    if instant < _handoff(rotation, zone, 0) or (end is not None and instant >= end):
        return None
    # The local clock gives the index to within a shift or two around a clock change; the
    # handoff instants (monotonic, though a skipped hour can make a shift empty) settle it.
    index = max((wall_time(instant, zone) - _anchor(rotation)) // rotation.shift, 0)
    while index > 0 and _handoff(rotation, zone, index) > instant:
        index -= 1
    while _handoff(rotation, zone, index + 1) <= instant:
        index += 1
    return index


def _window(rotation: RotationConfig, zone: ZoneInfo) -> Window | None:
    if rotation.days is None and rotation.hours is None:
        return None
    return Window(rotation.days if rotation.days is not None else ALL_DAYS, rotation.hours, zone)


def rotation_on_call(rotation: RotationConfig, zone: ZoneInfo, instant: datetime) -> str | None:
    """The member of one rotation (or layer) on call at `instant`, or None."""
    index = _shift_index(rotation, zone, as_utc(instant))
    if index is None:
        return None
    window = _window(rotation, zone)
    if window is not None and not window.contains(instant):
        return None
    return rotation.members[index % len(rotation.members)]


def who_is_on_call(schedule: ScheduleConfig, instant: datetime) -> list[str]:
    """Who is on call at `instant` (aware): the override, else the last staffed layer, or []."""
    instant = as_utc(instant)
    zone = schedule.timezone
    for override in reversed(schedule.overrides):
        if to_instant(override.from_, zone) <= instant < to_instant(override.to, zone):
            return [override.who]
    for rotation in reversed(schedule.rotations()):
        member = rotation_on_call(rotation, zone, instant)
        if member is not None:
            return [member]
    return []


def _rotation_changes(
    rotation: RotationConfig, zone: ZoneInfo, after: datetime
) -> Iterator[datetime]:
    """Every instant after `after` at which this rotation's answer may change, in order."""
    end = _end(rotation, zone)
    index = _shift_index(rotation, zone, after)
    if index is None:
        index = -1 if after < _handoff(rotation, zone, 0) else None
    if index is not None:
        for number in itertools.count(index + 1):
            handoff = _handoff(rotation, zone, number)
            if end is not None and handoff >= end:
                break
            yield handoff
    if end is not None and end > after:
        yield end


def _window_changes(
    rotation: RotationConfig, zone: ZoneInfo, after: datetime
) -> Iterator[datetime]:
    """The edges of a layer's days and hours after `after`, day by day, in order."""
    minutes = {0} if rotation.days is not None else set()
    if rotation.hours is not None:
        minutes |= {rotation.hours.start, rotation.hours.end % (24 * 60)}
    day = wall_time(after, zone).date()
    while True:
        for minute in sorted(minutes):
            edge = to_instant(datetime.combine(day, time()) + timedelta(minutes=minute), zone)
            if edge > after:
                yield edge
        day += timedelta(days=1)


def _changes(schedule: ScheduleConfig, after: datetime) -> Iterator[datetime]:
    zone = schedule.timezone
    sources: list[Iterator[datetime]] = []
    for rotation in schedule.rotations():
        sources.append(_rotation_changes(rotation, zone, after))
        if _window(rotation, zone) is not None:
            sources.append(_window_changes(rotation, zone, after))
    edges = sorted(
        edge
        for override in schedule.overrides
        for edge in (to_instant(override.from_, zone), to_instant(override.to, zone))
        if edge > after
    )
    sources.append(iter(edges))
    return heapq.merge(*sources)


def next_handoffs(
    schedule: ScheduleConfig,
    instant: datetime,
    n: int,
    *,
    within: timedelta = HANDOFF_HORIZON,
) -> list[Handoff]:
    """The next `n` changes of who is on call after `instant`, looking at most `within` ahead.

    A shift passing to the person already on call (a one-member rotation, say) is no handoff.
    """
    instant = as_utc(instant)
    found: list[Handoff] = []
    current = tuple(who_is_on_call(schedule, instant))
    last: datetime | None = None
    for edge in _changes(schedule, instant):
        if len(found) >= n or edge > instant + within:
            break
        if edge == last:
            continue
        last = edge
        now = tuple(who_is_on_call(schedule, edge))
        if now != current:
            found.append(Handoff(edge, current, now))
            current = now
    return found
