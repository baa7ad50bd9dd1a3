"""On-call schedules: rotations in local time across clock changes, overrides, layers, handoffs."""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.paging import (
    ScheduleConfig,
    next_handoffs,
    rotation_on_call,
    to_instant,
    who_is_on_call,
)
from bridge.rules.matchers import DAY_NAMES

BERLIN = ZoneInfo("Europe/Berlin")
SHANGHAI = ZoneInfo("Asia/Shanghai")
ZONES = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",  # clocks move by 30 minutes
    "America/Santiago",  # clocks change at midnight: some days start at 01:00
    "Asia/Shanghai",
    "UTC",
]
START = date(2026, 10, 1)
PEOPLE = ["alice", "bob", "carol", "dave", "erin"]


def schedule(**fields: Any) -> ScheduleConfig:
    return ScheduleConfig.model_validate(fields)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


# --- an independent reference -----------------------------------------------------------------


def reference_instant(local: datetime, zone: ZoneInfo) -> datetime:
    """When clocks first show `local` or later: try every offset the zone uses near it; if none
    fits, the time was skipped, so walk minute by minute to where the clocks jump past it."""
    offsets = {
        (local + timedelta(hours=hours)).replace(tzinfo=zone).utcoffset()
        for hours in range(-48, 49, 3)
    }
    candidates = [(local - offset).replace(tzinfo=UTC) for offset in offsets if offset is not None]
    fitting = [c for c in candidates if c.astimezone(zone).replace(tzinfo=None) == local]
    if fitting:
        return min(fitting)
    moment = min(candidates)
    while moment.astimezone(zone).replace(tzinfo=None) < local:
        moment += timedelta(minutes=1)
    return moment


def times_of_day(shift_minutes: int, handoff: int) -> list[int]:
    """The handoff minutes of each day for a shift dividing a day, starting with `handoff`."""
    return sorted((handoff + step * shift_minutes) % 1440 for step in range(1440 // shift_minutes))


def reference_on_call(
    members: list[str],
    shift_minutes: int,
    handoff: int,
    start: date,
    zone: ZoneInfo,
    instant: datetime,
) -> str | None:
    """Step local dates from the start and count the handoffs that happened by `instant`."""
    last_day = instant.astimezone(zone).date() + timedelta(days=2)
    count = 0
    day = start
    while day <= last_day:
        if shift_minutes >= 1440:
            todays = [handoff] if (day - start).days % (shift_minutes // 1440) == 0 else []
        else:
            todays = times_of_day(shift_minutes, handoff)
        if day == start:
            todays = [minute for minute in todays if minute >= handoff]
        if day < last_day - timedelta(days=4):
            count += len(todays)  # days this far back are over, whatever the offsets
        else:
            for minute in todays:
                moment = reference_instant(
                    datetime.combine(day, time()) + timedelta(minutes=minute), zone
                )
                if moment <= instant:
                    count += 1
        day += timedelta(days=1)
    return members[(count - 1) % len(members)] if count else None


@functools.cache
def transitions(zone_name: str) -> list[datetime]:
    """The instants (to the hour) around which the zone's offset changes, in the tested years."""
    zone = ZoneInfo(zone_name)
    found = []
    moment = utc(2026, 9, 1)
    offset = moment.astimezone(zone).utcoffset()
    while moment < utc(2028, 6, 1):
        moment += timedelta(hours=1)
        now = moment.astimezone(zone).utcoffset()
        if now != offset:
            found.append(moment)
            offset = now
    return found or [utc(2027, 3, 28)]


@st.composite
def instants(draw: st.DrawFn, zone_name: str) -> datetime:
    """Instants over two years, often within hours or minutes of a clock change."""
    way = draw(st.sampled_from(["anywhere", "within a day or so", "within the hour"]))
    if way != "anywhere":
        near = draw(st.sampled_from(transitions(zone_name)))
        span = 36 * 60 if way == "within a day or so" else 90
        return near + timedelta(minutes=draw(st.integers(-span, span)))
    return utc(2026, 9, 20) + timedelta(minutes=draw(st.integers(0, 600 * 1440)))


SHIFTS = [180, 240, 360, 480, 720, 1440, 2 * 1440, 3 * 1440, 7 * 1440, 14 * 1440]


@functools.cache
def clock_change_minutes(zone_name: str) -> list[int]:
    """Local minutes of the day in and around the hours the zone's clock changes skip or repeat."""
    zone = ZoneInfo(zone_name)
    found = {0, 600}
    for change in transitions(zone_name):
        before = (change - timedelta(seconds=1)).astimezone(zone)
        minute = (before.hour * 60 + before.minute + 1) % 1440  # where the clock would have gone on
        found.update((minute + delta) % 1440 for delta in (-60, -30, -15, 0, 15, 30, 45, 60))
    return sorted(found)


@st.composite
def rotations(draw: st.DrawFn, zone_name: str) -> dict[str, Any]:
    """Rotations whose handoffs often fall in the hours the zone's clock changes touch."""
    shift = draw(st.sampled_from(SHIFTS))
    minute = draw(st.sampled_from(clock_change_minutes(zone_name)) | st.integers(0, 1439))
    start = START + timedelta(days=draw(st.integers(0, 200)))
    clock = f"{minute // 60:02}:{minute % 60:02}"
    weekly = shift % (7 * 1440) == 0 and draw(st.booleans())
    return {
        "members": draw(st.lists(st.sampled_from(PEOPLE), min_size=1, max_size=4)),
        "shift": f"{shift}m",
        "handoff": f"{DAY_NAMES[start.weekday()]} {clock}" if weekly else clock,
        "start": start,
    }


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(ZONES), st.data())
def test_rotation_matches_a_reference_that_steps_local_dates(
    zone_name: str, data: st.DataObject
) -> None:
    """At every instant exactly the member the date-stepping reference names is on call."""
    rotation = data.draw(rotations(zone_name))
    instant = data.draw(instants(zone_name))
    zone = ZoneInfo(zone_name)
    built = schedule(timezone=zone_name, rotation=rotation)
    assert built.rotation is not None
    expected = reference_on_call(
        rotation["members"],
        int(built.rotation.shift.total_seconds()) // 60,
        built.rotation.handoff.minute,
        rotation["start"],
        zone,
        instant,
    )
    assert who_is_on_call(built, instant) == ([expected] if expected else [])


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(ZONES),
    st.sampled_from([180, 360, 720, 1440, 2 * 1440, 7 * 1440]),
    st.integers(0, 3),
    st.data(),
)
def test_rotation_matches_the_reference_around_clock_changes(
    zone_name: str, shift: int, shifts_before: int, data: st.DataObject
) -> None:
    """Handoffs on the very day clocks change, at the very minutes they skip or repeat."""
    zone = ZoneInfo(zone_name)
    change = data.draw(st.sampled_from(transitions(zone_name)))
    minute = data.draw(st.sampled_from(clock_change_minutes(zone_name)))
    start = change.astimezone(zone).date() - timedelta(days=shifts_before * max(shift // 1440, 1))
    clock = f"{minute // 60:02}:{minute % 60:02}"
    members = PEOPLE[:3]
    built = schedule(
        timezone=zone_name,
        rotation={"members": members, "shift": f"{shift}m", "handoff": clock, "start": start},
    )
    instant = change + timedelta(minutes=data.draw(st.integers(-120, 120)))
    expected = reference_on_call(members, shift, minute, start, zone, instant)
    assert who_is_on_call(built, instant) == ([expected] if expected else [])


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(ZONES), st.data())
def test_handoffs_happen_at_the_local_handoff_time(zone_name: str, data: st.DataObject) -> None:
    """Every handoff is at a handoff wall time (or where clocks skip past it), even across DST."""
    rotation = data.draw(rotations(zone_name))
    rotation["members"] = PEOPLE[: data.draw(st.integers(2, 4))]  # every shift change hands off
    instant = data.draw(instants(zone_name))
    zone = ZoneInfo(zone_name)
    built = schedule(timezone=zone_name, rotation=rotation)
    assert built.rotation is not None
    shift = int(built.rotation.shift.total_seconds()) // 60
    minutes = times_of_day(shift, built.rotation.handoff.minute) if shift < 1440 else None
    handoffs = next_handoffs(built, instant, 4)
    assert len(handoffs) == 4
    previous = instant
    for handoff in handoffs:
        assert handoff.at > previous
        assert handoff.at.tzinfo is UTC
        day = handoff.at.astimezone(zone).date()
        wanted = minutes or [built.rotation.handoff.minute]
        assert any(
            reference_instant(datetime.combine(day, time()) + timedelta(minutes=m), zone)
            == handoff.at
            for m in wanted
        ), handoff
        assert who_is_on_call(built, handoff.at) == list(handoff.after)
        assert who_is_on_call(built, handoff.at - timedelta(microseconds=1)) == list(handoff.before)
        previous = handoff.at


def test_weekly_handoff_keeps_its_wall_time_across_the_spring_change() -> None:
    """Europe/Berlin: the Monday 10:00 handoff is 09:00 UTC in winter and 08:00 UTC in summer."""
    berlin = schedule(
        timezone="Europe/Berlin",
        rotation={
            "members": ["alice", "bob"],
            "shift": "1w",
            "handoff": "mon 10:00",
            "start": "2027-03-15",
        },
    )
    handoffs = next_handoffs(berlin, utc(2027, 3, 16), 3)
    assert [h.at.astimezone(UTC) for h in handoffs] == [
        utc(2027, 3, 22, 9),
        utc(2027, 3, 29, 8),
        utc(2027, 4, 5, 8),
    ]
    assert [h.at.astimezone(BERLIN).strftime("%a %H:%M") for h in handoffs] == ["Mon 10:00"] * 3
    assert who_is_on_call(berlin, utc(2027, 3, 29, 7, 59)) == ["bob"]
    assert who_is_on_call(berlin, utc(2027, 3, 29, 8)) == ["alice"]


def test_handoff_in_a_skipped_hour_is_when_clocks_jump() -> None:
    """02:30 does not exist in Berlin on 2027-03-28: that handoff is at 03:00 CEST, the change."""
    berlin = schedule(
        timezone="Europe/Berlin",
        rotation={
            "members": ["alice", "bob"],
            "shift": "1d",
            "handoff": "02:30",
            "start": "2027-03-26",
        },
    )
    handoffs = next_handoffs(berlin, utc(2027, 3, 27, 12), 2)
    assert [h.at.astimezone(UTC) for h in handoffs] == [
        utc(2027, 3, 28, 1),
        utc(2027, 3, 29, 0, 30),
    ]
    assert handoffs[0].at.astimezone(BERLIN).strftime("%H:%M %Z") == "03:00 CEST"
    # Shifts each side of the change: 23.5 hours, then 23.5 hours again, measured in real time.
    assert who_is_on_call(berlin, utc(2027, 3, 28, 0, 59)) == ["bob"]
    assert who_is_on_call(berlin, utc(2027, 3, 28, 1)) == ["alice"]


def test_handoff_in_a_repeated_hour_is_its_first_occurrence() -> None:
    """02:30 happens twice in Berlin on 2027-10-31: the handoff is at the first, 00:30 UTC."""
    berlin = schedule(
        timezone="Europe/Berlin",
        rotation={
            "members": ["alice", "bob"],
            "shift": "1w",
            "handoff": "sun 02:30",
            "start": "2027-10-24",
        },
    )
    (handoff,) = next_handoffs(berlin, utc(2027, 10, 30), 1)
    assert handoff.at.astimezone(UTC) == utc(2027, 10, 31, 0, 30)
    assert (handoff.before, handoff.after) == (("alice",), ("bob",))


def test_twelve_hour_shifts_follow_the_wall_clock() -> None:
    """Shifts of 12h hand off at 08:00 and 20:00 local, so the night of the change is shorter."""
    berlin = schedule(
        timezone="Europe/Berlin",
        rotation={
            "members": ["day", "night"],
            "shift": "12h",
            "handoff": "08:00",
            "start": "2027-03-27",
        },
    )
    times = [
        h.at.astimezone(BERLIN).strftime("%d %H:%M")
        for h in next_handoffs(berlin, utc(2027, 3, 27, 12), 4)
    ]
    assert times == ["27 20:00", "28 08:00", "28 20:00", "29 08:00"]
    night = next_handoffs(berlin, utc(2027, 3, 27, 12), 2)
    assert night[1].at - night[0].at == timedelta(hours=11)


def test_nobody_before_the_start_or_after_the_end() -> None:
    """A rotation covers [start at handoff time, end at handoff time)."""
    bounded = schedule(
        timezone="Asia/Shanghai",
        rotation={
            "members": ["alice"],
            "shift": "1d",
            "handoff": "10:00",
            "start": "2026-12-07",
            "end": "2026-12-09",
        },
    )
    at = datetime(2026, 12, 7, 9, 59, tzinfo=SHANGHAI)
    assert who_is_on_call(bounded, at) == []
    assert who_is_on_call(bounded, at + timedelta(minutes=1)) == ["alice"]
    assert who_is_on_call(bounded, datetime(2026, 12, 9, 9, 59, tzinfo=SHANGHAI)) == ["alice"]
    assert who_is_on_call(bounded, datetime(2026, 12, 9, 10, 0, tzinfo=SHANGHAI)) == []
    handoffs = next_handoffs(bounded, at - timedelta(days=1), 5)
    assert [(h.at.astimezone(SHANGHAI).day, h.before, h.after) for h in handoffs] == [
        (7, (), ("alice",)),
        (9, ("alice",), ()),
    ]


def test_the_issue_example() -> None:
    """Weekly alice/bob from Monday 2026-12-07 10:00; carol over Christmas."""
    primary = schedule(
        timezone="Asia/Shanghai",
        rotation={
            "members": ["alice", "bob"],
            "shift": "1w",
            "handoff": "mon 10:00",
            "start": date(2026, 12, 7),
        },
        overrides=[{"who": "carol", "from": "2026-12-24 18:00", "to": "2026-12-26 10:00"}],
    )
    local = functools.partial(datetime, tzinfo=SHANGHAI)
    assert who_is_on_call(primary, local(2026, 12, 10)) == ["alice"]
    assert who_is_on_call(primary, local(2026, 12, 14, 10)) == ["bob"]
    assert who_is_on_call(primary, local(2026, 12, 24, 17, 59)) == ["alice"]
    assert who_is_on_call(primary, local(2026, 12, 24, 18)) == ["carol"]
    assert who_is_on_call(primary, local(2026, 12, 26, 10)) == ["alice"]
    handoffs = next_handoffs(primary, local(2026, 12, 20), 4)
    assert [(h.at.astimezone(SHANGHAI).strftime("%m-%d %H:%M"), h.after) for h in handoffs] == [
        ("12-21 10:00", ("alice",)),
        ("12-24 18:00", ("carol",)),
        ("12-26 10:00", ("alice",)),
        ("12-28 10:00", ("bob",)),
    ]


def test_later_layers_win_where_they_have_someone() -> None:
    """A weekend layer and a daytime layer over a daily rotation: the last staffed layer wins."""
    layered = schedule(
        timezone="Asia/Shanghai",
        rotation={
            "members": ["alice", "bob"],
            "shift": "1d",
            "handoff": "09:00",
            "start": "2026-12-07",
        },
        layers=[
            {
                "members": ["wes"],
                "shift": "1w",
                "handoff": "09:00",
                "start": "2026-12-07",
                "days": "sat-sun",
            },
            {
                "members": ["dana"],
                "shift": "1w",
                "handoff": "00:00",
                "start": "2026-12-07",
                "hours": "10:00-12:00",
                "days": "mon-fri",
            },
        ],
    )
    local = functools.partial(datetime, tzinfo=SHANGHAI)
    assert who_is_on_call(layered, local(2026, 12, 8, 9)) == ["bob"]  # Tuesday, base rotation
    assert who_is_on_call(layered, local(2026, 12, 8, 11)) == ["dana"]  # weekday late morning
    assert who_is_on_call(layered, local(2026, 12, 12, 11)) == ["wes"]  # Saturday
    assert who_is_on_call(layered, local(2026, 12, 14, 8, 59)) == ["alice"]  # Monday before 09:00
    handoffs = next_handoffs(layered, local(2026, 12, 11, 12, 30), 4)
    assert [(h.at.astimezone(SHANGHAI).strftime("%a %H:%M"), h.after) for h in handoffs] == [
        ("Sat 00:00", ("wes",)),
        ("Mon 00:00", ("alice",)),
        ("Mon 09:00", ("bob",)),
        ("Mon 10:00", ("dana",)),
    ]


def test_one_member_has_no_handoffs() -> None:
    """A shift passing to the person already on call is no handoff; the search is bounded."""
    solo = schedule(
        timezone="UTC",
        rotation={"members": ["alice"], "shift": "1h", "handoff": "00:00", "start": "2026-01-01"},
    )
    assert next_handoffs(solo, utc(2026, 6, 1), 3) == []


def test_naive_instants_are_refused() -> None:
    """Which zone a naive time is in depends on who asks: callers must say."""
    solo = schedule(
        timezone="UTC",
        rotation={"members": ["alice"], "shift": "1d", "handoff": "00:00", "start": "2026-01-01"},
    )
    with pytest.raises(ValueError, match="aware"):
        who_is_on_call(solo, datetime(2026, 6, 1))


@st.composite
def overrides(draw: st.DrawFn) -> list[dict[str, Any]]:
    found = []
    for _ in range(draw(st.integers(1, 4))):
        begin = datetime(2027, 3, 20) + timedelta(minutes=30 * draw(st.integers(0, 24 * 48)))
        length = timedelta(minutes=30 * draw(st.integers(1, 24 * 10)))
        who = draw(st.sampled_from(["olga", "oscar", "otto"]))
        found.append(
            {"who": who, "from": begin.isoformat(" "), "to": (begin + length).isoformat(" ")}
        )
    return found


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(ZONES), overrides(), st.data())
def test_overrides_win_inside_their_window_and_not_outside(
    zone_name: str, extra: list[dict[str, Any]], data: st.DataObject
) -> None:
    """Inside an override its person is on call (the later listed wins); outside, the rotation."""
    rotation = data.draw(rotations(zone_name))
    zone = ZoneInfo(zone_name)
    plain = schedule(timezone=zone_name, rotation=rotation)
    overridden = schedule(timezone=zone_name, rotation=rotation, overrides=extra)
    begin = reference_instant(datetime(2027, 3, 19), zone)
    instant = begin + timedelta(minutes=data.draw(st.integers(0, 60 * 24 * 60)))
    inside = [
        o["who"]
        for o in extra
        if reference_instant(datetime.fromisoformat(o["from"]), zone)
        <= instant
        < reference_instant(datetime.fromisoformat(o["to"]), zone)
    ]
    expected = [inside[-1]] if inside else who_is_on_call(plain, instant)
    assert who_is_on_call(overridden, instant) == expected


@st.composite
def layered_schedules(draw: st.DrawFn) -> dict[str, Any]:
    zone_name = draw(st.sampled_from(ZONES))
    layers = draw(st.lists(rotations(zone_name), min_size=1, max_size=3))
    for layer in layers:
        if draw(st.booleans()):
            layer["days"] = draw(st.sampled_from(["sat-sun", "mon-fri", "wed", "fri-mon"]))
        if draw(st.booleans()):
            layer["hours"] = draw(st.sampled_from(["09:00-18:00", "22:00-06:00", "02:00-03:00"]))
    fields: dict[str, Any] = {"timezone": zone_name, "layers": layers}
    if draw(st.booleans()):
        fields["rotation"] = draw(rotations(zone_name))
    if draw(st.booleans()):
        fields["overrides"] = draw(overrides())
    return fields


@settings(max_examples=150, deadline=None)
@given(layered_schedules(), st.data())
def test_the_last_staffed_layer_decides(fields: dict[str, Any], data: st.DataObject) -> None:
    """Without an override in force, the answer is that of the last layer with someone on call."""
    built = schedule(**fields)
    instant = data.draw(instants(fields["timezone"]))
    if any(
        to_instant(o.from_, built.timezone) <= instant < to_instant(o.to, built.timezone)
        for o in built.overrides
    ):
        return
    answers = [rotation_on_call(r, built.timezone, instant) for r in built.rotations()]
    staffed = [answer for answer in answers if answer is not None]
    assert who_is_on_call(built, instant) == staffed[-1:]


@settings(max_examples=100, deadline=None)
@given(layered_schedules(), st.data())
def test_handoffs_are_every_change_and_only_changes(
    fields: dict[str, Any], data: st.DataObject
) -> None:
    """Walking the clock in 30-minute steps sees a change exactly where a handoff is listed."""
    built = schedule(**fields)
    start = data.draw(instants(fields["timezone"])).replace(second=0, microsecond=0)
    start -= timedelta(minutes=start.minute % 30)
    handoffs = next_handoffs(built, start, 6)
    end = min(handoffs[-1].at if handoffs else start, start + timedelta(days=6))
    listed = {h.at for h in handoffs}
    moment, before = start, who_is_on_call(built, start)
    while moment < end:
        following = moment + timedelta(minutes=30)
        now = who_is_on_call(built, following)
        between = [at for at in listed if moment < at <= following]
        if now != before:
            assert between, (moment, before, now)
        for at in between:
            handoff = next(h for h in handoffs if h.at == at)
            assert handoff.before != handoff.after
        moment, before = following, now
