"""Annotated types for config models: durations, time zones, and paths relative to the config."""

from __future__ import annotations

import difflib
import functools
import re
import zoneinfo
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, PlainValidator, SecretStr, ValidationInfo
from pydantic_core import PydanticCustomError
from yarl import URL

from bridge.config.errors import os_reason

# Validation context key for the config file's directory, which relative paths are resolved from.
BASE_DIR = "base_dir"
EXPECTED = "expected"

_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d)\s*)+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_UNITS = {"ms": "milliseconds", "s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_A_DURATION = "a duration like '30s' or '5m'"


def expected(what: str) -> PydanticCustomError:
    """Make a validation error that the report renders as `expected <what>, got <value>`."""
    return PydanticCustomError(EXPECTED, "expected {what}", {"what": what})


def _number(text: str) -> int | float:
    # Whole numbers stay int so `f"{n}s"` is exactly `timedelta(seconds=n)`, even for huge n.
    return float(text) if "." in text else int(text)


def _parse_text(text: str) -> timedelta:
    text = text.strip()
    if _NUMBER.fullmatch(text):
        return timedelta(seconds=_number(text))
    if not _DURATION.fullmatch(text):
        raise expected(_A_DURATION)
    total = timedelta()
    for amount, unit in _DURATION_PART.findall(text):
        total += timedelta(**{_UNITS[unit]: _number(amount)})
    return total


def parse_duration(value: Any) -> timedelta:
    """Read a duration: a number of seconds, or text like `500ms`, `30s`, `1h30m`, `1d`."""
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, bool) or not isinstance(value, int | float | str):
        raise expected(_A_DURATION)
    else:
        try:
            result = _parse_text(value) if isinstance(value, str) else timedelta(seconds=value)
        except (OverflowError, ValueError):
            raise expected(_A_DURATION) from None
    if result < timedelta():
        raise expected("a duration that is not negative")
    return result


def _positive(value: timedelta) -> timedelta:
    if not value:
        raise expected("a duration greater than zero")
    return value


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def parse_time_zone(value: Any) -> zoneinfo.ZoneInfo:
    """Read an IANA time zone name such as `Asia/Shanghai`."""
    if isinstance(value, zoneinfo.ZoneInfo):
        return value
    if not isinstance(value, str) or not value:
        raise expected("a time zone name like 'Asia/Shanghai'")
    try:
        return zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        pass
    close = difflib.get_close_matches(value, _zone_names(), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise PydanticCustomError(
        "time_zone", "unknown time zone '{zone}'{hint}", {"zone": value, "hint": hint}
    )


def resolve_path(value: Any, info: ValidationInfo) -> Path:
    """Read a path; a relative one is taken from the directory in the `base_dir` context."""
    if not isinstance(value, str | Path) or not str(value):
        raise expected("a file path")
    path = Path(value)
    base_dir = (info.context or {}).get(BASE_DIR)
    if base_dir is not None and not path.is_absolute():
        path = Path(base_dir) / path
    return path


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
PositiveDuration = Annotated[timedelta, BeforeValidator(parse_duration), AfterValidator(_positive)]
TimeZoneName = Annotated[zoneinfo.ZoneInfo, PlainValidator(parse_time_zone)]
FilePath = Annotated[Path, BeforeValidator(resolve_path)]


def _readable_secret(path: Path) -> Path:
    # Read when the config loads, so `check` refuses a secret file that `run` could not use.
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"cannot read {path}: not UTF-8 text") from None
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {os_reason(exc)}") from None
    if not text.strip():
        raise ValueError(f"{path} is empty")
    return path


# A file holding a secret (a systemd credential, say): it must be readable and not empty.
SecretFile = Annotated[Path, BeforeValidator(resolve_path), AfterValidator(_readable_secret)]


def http_url(value: str) -> str:
    """An http:// or https:// URL with a host; the error never repeats it (it may hold a token)."""
    try:
        url = URL(value)
    except (TypeError, ValueError):
        raise ValueError("expected an http:// or https:// URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("expected an http:// or https:// URL")
    return value


def _non_empty(value: SecretStr) -> SecretStr:
    # An empty secret would match an empty header: refuse it rather than accept anyone.
    if not value.get_secret_value():
        raise ValueError("must not be empty")
    return value


HttpUrl = Annotated[str, AfterValidator(http_url)]
BaseUrl = Annotated[str, AfterValidator(lambda value: http_url(value).rstrip("/"))]
Secret = Annotated[SecretStr, AfterValidator(_non_empty)]
