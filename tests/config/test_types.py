"""Tests for the reusable config types: durations, time zones and config-relative paths."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.config import (
    ConfigError,
    ConfigModel,
    Duration,
    FilePath,
    PositiveDuration,
    TimeZoneName,
    load_config,
    load_config_text,
    parse_duration,
)


class Timing(ConfigModel):
    """A model using each type once."""

    every: Duration = timedelta(seconds=30)
    timeout: PositiveDuration = timedelta(seconds=5)
    tz: TimeZoneName | None = None
    database: FilePath = Path("state.db")


def load(text: str) -> Timing:
    """Load `text` as config.yaml from /etc/smsbridge."""
    return load_config_text(text, "config.yaml", Timing, Path("/etc/smsbridge"), environ={})


def report(text: str) -> str:
    """Load `text` as config.yaml and return the rendered error report."""
    with pytest.raises(ConfigError) as caught:
        load(text)
    return caught.value.render()


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("500ms", timedelta(milliseconds=500)),
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1h", timedelta(hours=1)),
        ("1d", timedelta(days=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1h 30m", timedelta(hours=1, minutes=30)),
        ("1.5h", timedelta(minutes=90)),
        ("45", timedelta(seconds=45)),
        ("0s", timedelta()),
        (90, timedelta(seconds=90)),
        (0.25, timedelta(milliseconds=250)),
    ],
)
def test_duration_forms(written: str | float, expected: timedelta) -> None:
    """Numbers are seconds; text combines amounts with ms, s, m, h and d."""
    assert parse_duration(written) == expected


def test_duration_in_a_model() -> None:
    """A duration written in YAML becomes a timedelta on the model."""
    assert load("every: 1h30m\n").every == timedelta(minutes=90)


def test_bad_duration() -> None:
    """A word that is no duration shows the expected form and the value written."""
    assert report("every: often\n") == (
        "error: config.yaml has 1 problem\n"
        "config.yaml:1:8: every: expected a duration like '30s' or '5m', got 'often'"
    )


@pytest.mark.parametrize("written", ["true", "5 s m", "1x", "h", "[1]", "-1h"])
def test_not_durations(written: str) -> None:
    """Booleans, lists, unknown units and bare units are refused."""
    assert "expected a duration like '30s' or '5m'" in report(f"every: {written}\n")


def test_negative_duration() -> None:
    """A negative number of seconds is refused."""
    assert report("every: -5\n") == (
        "error: config.yaml has 1 problem\n"
        "config.yaml:1:8: every: expected a duration that is not negative, got -5"
    )


def test_positive_duration_refuses_zero() -> None:
    """`PositiveDuration` needs more than zero."""
    assert report("timeout: 0s\n") == (
        "error: config.yaml has 1 problem\n"
        "config.yaml:1:10: timeout: expected a duration greater than zero, got '0s'"
    )


@given(st.integers(min_value=0, max_value=10**9))
def test_duration_seconds_and_minutes_match_timedelta(n: int) -> None:
    """`{n}s` and `{n}m` parse to exactly n seconds and n minutes."""
    assert parse_duration(f"{n}s") == timedelta(seconds=n)
    assert parse_duration(f"{n}m") == timedelta(minutes=n)


def test_time_zone() -> None:
    """A zone name becomes a ZoneInfo."""
    assert load("tz: Asia/Shanghai\n").tz == ZoneInfo("Asia/Shanghai")


def test_unknown_time_zone_names_it_and_suggests() -> None:
    """An unknown zone is named, with the closest real one."""
    assert report("tz: Asia/Shangai\n") == (
        "error: config.yaml has 1 problem\n"
        "config.yaml:1:5: tz: unknown time zone 'Asia/Shangai'; did you mean 'Asia/Shanghai'?"
    )


def test_time_zone_must_be_text() -> None:
    """A number is not a zone name."""
    assert report("tz: 8\n") == (
        "error: config.yaml has 1 problem\n"
        "config.yaml:1:5: tz: expected a time zone name like 'Asia/Shanghai', got 8"
    )


def test_relative_path_is_taken_from_the_config_directory() -> None:
    """A relative path is joined to the config file's directory; an absolute one is kept."""
    assert load("database: data/bridge.db\n").database == Path("/etc/smsbridge/data/bridge.db")
    assert load("database: /var/lib/x.db\n").database == Path("/var/lib/x.db")


def test_relative_path_from_a_real_file(tmp_path: Path) -> None:
    """`load_config` resolves paths against the directory the file is in."""
    path = tmp_path / "config.yaml"
    path.write_text("database: state.db\n", encoding="utf-8")
    assert load_config(path, Timing, environ={}).database == tmp_path / "state.db"


def test_path_without_context_stays_relative() -> None:
    """Outside a config load there is no directory to resolve from."""
    assert Timing.model_validate({"database": "x.db"}).database == Path("x.db")


def test_empty_path_is_refused() -> None:
    """An empty string is not a path."""
    assert report("database: ''\n") == (
        "error: config.yaml has 1 problem\nconfig.yaml:1:11: database: expected a file path, got ''"
    )
