"""Quiet hours: inside or not, where the window ends, and which severities go through."""

from __future__ import annotations

import functools
import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bridge.paging import QuietHours

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")


def quiet(hours: str, timezone: str = "Asia/Shanghai", **extra: object) -> QuietHours:
    return QuietHours.model_validate({"hours": hours, "timezone": timezone, **extra})


def test_a_window_across_midnight() -> None:
    night = quiet("23:00-07:00")
    assert night.contains(datetime(2026, 12, 8, 23, 0, tzinfo=SHANGHAI))
    assert night.contains(datetime(2026, 12, 9, 6, 59, tzinfo=SHANGHAI))
    assert not night.contains(datetime(2026, 12, 9, 7, 0, tzinfo=SHANGHAI))
    assert not night.contains(datetime(2026, 12, 8, 22, 59, tzinfo=SHANGHAI))
    assert night.window_end(datetime(2026, 12, 8, 23, 30, tzinfo=SHANGHAI)) == datetime(
        2026, 12, 9, 7, 0, tzinfo=SHANGHAI
    )
    assert night.window_end(datetime(2026, 12, 8, 20, 0, tzinfo=UTC)) == datetime(
        2026, 12, 9, 7, 0, tzinfo=SHANGHAI
    )
    outside = datetime(2026, 12, 9, 12, 0, tzinfo=SHANGHAI)
    assert night.window_end(outside) == outside


def test_an_end_that_clocks_skip_is_the_change() -> None:
    """Berlin skips 02:00-03:00 on 2027-03-28: a window ending 02:30 ends at 03:00 CEST."""
    early = quiet("01:00-02:30", "Europe/Berlin")
    end = early.window_end(datetime(2027, 3, 28, 1, 30, tzinfo=BERLIN))
    assert end.astimezone(UTC) == datetime(2027, 3, 28, 1, 0, tzinfo=UTC)
    assert not early.contains(end)


def test_an_end_in_a_repeated_hour_comes_after_the_instant() -> None:
    """Berlin shows 02:00-03:00 twice on 2027-10-31: inside the second run, its own end counts."""
    early = quiet("01:00-02:30", "Europe/Berlin")
    second_run = datetime(2027, 10, 31, 1, 15, tzinfo=UTC)  # 02:15 CET, the second time
    assert early.contains(second_run)
    end = early.window_end(second_run)
    assert end.astimezone(UTC) == datetime(2027, 10, 31, 1, 30, tzinfo=UTC)
    first_run = datetime(2027, 10, 31, 0, 15, tzinfo=UTC)  # 02:15 CEST
    assert early.window_end(first_run).astimezone(UTC) == datetime(2027, 10, 31, 0, 30, tzinfo=UTC)


def test_allow_defaults_to_the_critical_severities() -> None:
    assert quiet("23:00-07:00").lets_through("critical", ["critical"])
    assert not quiet("23:00-07:00").lets_through("warning", ["critical"])
    loose = quiet("23:00-07:00", allow="warning")
    assert loose.allow == ["warning"]
    assert loose.lets_through("warning", ["critical"])
    assert not loose.lets_through("critical", ["critical"])


@pytest.mark.parametrize(
    ("hours", "message"),
    [
        ("00:00-24:00", "whole day"),
        ("7-9", "hours like"),
        ("23:00-23:00", "different from the start"),
    ],
)
def test_bad_hours(hours: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        quiet(hours)


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        quiet("23:00-07:00").contains(datetime(2026, 1, 1))


@functools.cache
def clock_changes(zone_name: str) -> list[datetime]:
    """The hours (UTC) at which the zone's offset changes, from 2026-09 to 2028-09."""
    zone = ZoneInfo(zone_name)
    hours = [datetime(2026, 9, 1, tzinfo=UTC) + timedelta(hours=h) for h in range(2 * 366 * 24)]
    return [
        b
        for a, b in itertools.pairwise(hours)
        if a.astimezone(zone).utcoffset() != b.astimezone(zone).utcoffset()
    ] or [hours[0]]


@st.composite
def instants(draw: st.DrawFn, zone_name: str) -> datetime:
    """Instants over two years, often within a day of a clock change."""
    if draw(st.booleans()):
        near = draw(st.sampled_from(clock_changes(zone_name)))
        return near + timedelta(minutes=draw(st.integers(-26 * 60, 2 * 60)))
    return datetime(2026, 9, 1, tzinfo=UTC) + timedelta(minutes=draw(st.integers(0, 730 * 1440)))


HOURS = st.tuples(st.integers(0, 47), st.integers(0, 47)).filter(lambda p: p[0] != p[1])


@settings(max_examples=300, deadline=None)
@given(
    HOURS,
    st.sampled_from(["Europe/Berlin", "America/Santiago", "Australia/Lord_Howe", "Asia/Shanghai"]),
    st.data(),
    st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=5),
)
def test_window_end_is_the_first_instant_outside(
    halves: tuple[int, int], zone: str, data: st.DataObject, fractions: list[float]
) -> None:
    """From inside, the end is later, outside, and everything before it is still inside."""
    start, end = (f"{h // 2:02}:{30 * (h % 2):02}" for h in halves)
    window = quiet(f"{start}-{end}", zone)
    instant = data.draw(instants(zone))
    found = window.window_end(instant)
    if not window.contains(instant):
        assert found == instant
        return
    assert found > instant
    assert not window.contains(found)
    span = (found - instant) // timedelta(microseconds=1)
    for fraction in fractions:
        assert window.contains(instant + timedelta(microseconds=int(span * fraction)))
    # A day at most, or two when a clock change skips the only time outside (Santiago's midnight).
    assert found - instant <= timedelta(hours=49)
