"""What rules match on: Alertmanager-style label matchers, and weekday and hour windows."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from enum import StrEnum
from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator

from bridge.config import expected


class MatchOp(StrEnum):
    """How a matcher compares a label's value."""

    EQUAL = "="
    NOT_EQUAL = "!="
    REGEX = "=~"
    NOT_REGEX = "!~"


class MatcherError(ValueError):
    """A matcher that cannot be parsed, or whose regular expression does not compile."""


# Alertmanager's classic parser (pkg/labels/parse.go): `=~` must be tried before `=`.
LABEL_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_SPACE = "[ \t\n\r\f\v]"
_MATCHER = re.compile(
    rf"{_SPACE}*({LABEL_NAME.pattern}){_SPACE}*(=~|=|!=|!~){_SPACE}*(.*?){_SPACE}*", re.DOTALL
)
_UNESCAPES = {"n": "\n", '"': '"', "\\": "\\"}

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALL_DAYS = frozenset(range(7))
_FULL_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAYS = {name: day for names in (DAY_NAMES, _FULL_NAMES) for day, name in enumerate(names)}
_HOURS = re.compile(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*")


@dataclass(frozen=True, slots=True)
class Matcher:
    """One condition on one label; a missing label has the value "" (as in Alertmanager)."""

    name: str
    op: MatchOp
    value: str
    pattern: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def create(cls, name: str, op: MatchOp, value: str) -> Matcher:
        """Make a matcher, compiling its regular expression; raises MatcherError."""
        pattern = None
        if op in (MatchOp.REGEX, MatchOp.NOT_REGEX):
            try:
                pattern = re.compile(value)
            except re.error as exc:
                raise MatcherError(f"invalid regular expression {value!r}: {exc}") from None
        return cls(name, op, value, pattern)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether the label set satisfies this matcher; regexes are anchored at both ends."""
        actual = labels.get(self.name, "")
        if self.op is MatchOp.EQUAL:
            return actual == self.value
        if self.op is MatchOp.NOT_EQUAL:
            return actual != self.value
        assert self.pattern is not None  # create() compiles every regex matcher
        found = self.pattern.fullmatch(actual) is not None
        return found if self.op is MatchOp.REGEX else not found

    def __str__(self) -> str:
        return f'{self.name}{self.op.value}"{escape_value(self.value)}"'


def escape_value(value: str) -> str:
    """Escape a value for a double-quoted matcher: backslash, double quote and newline."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _unescape(raw: str) -> str:
    quoted = raw.startswith('"')
    if quoted:
        raw = raw[1:]
    out: list[str] = []
    escaped = closed = False
    for index, char in enumerate(raw):
        if escaped:
            escaped = False
            # A backslash before any other character is kept: `db\d+` stays a regex.
            out.append(_UNESCAPES.get(char, "\\" + char))
        elif char == "\\":
            if index == len(raw) - 1:
                out.append(char)
            else:
                escaped = True
        elif char == '"':
            if not quoted or index != len(raw) - 1:
                raise MatcherError("unescaped double quote in the value")
            closed = True
        else:
            out.append(char)
    if quoted and not closed:
        raise MatcherError("missing closing double quote")
    return "".join(out)


def parse_matcher(text: str) -> Matcher:
    """Parse `name op value` (value double-quoted with escapes, or bare); raises MatcherError."""
    found = _MATCHER.fullmatch(text)
    if found is None:
        raise MatcherError(
            f"bad matcher {text!r}: expected name, an operator (=, !=, =~, !~) and a value, "
            'as in severity="critical"'
        )
    name, op, raw = found.groups()
    try:
        return Matcher.create(name, MatchOp(op), _unescape(raw))
    except MatcherError as exc:
        raise MatcherError(f"bad matcher {text!r}: {exc}") from None


def equality_matchers(labels: Mapping[str, str]) -> tuple[Matcher, ...]:
    """The equality shorthand `labels: {severity: critical}` as matchers."""
    return tuple(Matcher.create(name, MatchOp.EQUAL, value) for name, value in labels.items())


def matches_all(matchers: tuple[Matcher, ...], labels: Mapping[str, str]) -> bool:
    """Whether every matcher holds for the label set (true for no matchers)."""
    return all(matcher.matches(labels) for matcher in matchers)


# --- time windows ---------------------------------------------------------------------------


def _day(name: str) -> int:
    key = name.strip().lower()
    if key not in _DAYS:
        raise ValueError(name)
    return _DAYS[key]


def parse_days(value: Any) -> frozenset[int]:
    """Read days as names (`mon`, `monday`), ranges (`mon-fri`, `sat-mon`) or a list of them."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise expected("day names like 'mon' or ranges like 'mon-fri'")
    days: set[int] = set()
    for item in items:
        if not isinstance(item, str):
            raise expected("day names like 'mon' or ranges like 'mon-fri'")
        first, _, last = item.partition("-")
        try:
            start = _day(first)
            end = _day(last) if last else start
        except ValueError:
            raise ValueError(
                f"unknown day '{item.strip()}' (days are {', '.join(DAY_NAMES)};"
                " ranges are written like mon-fri)"
            ) from None
        days.update((start + step) % 7 for step in range((end - start) % 7 + 1))
    return frozenset(days)


@dataclass(frozen=True, slots=True)
class HourRange:
    """Minutes since midnight, start inclusive, end exclusive; start > end wraps past midnight."""

    start: int
    end: int

    @property
    def wraps(self) -> bool:
        """Whether the range runs past midnight."""
        return self.start > self.end

    def __str__(self) -> str:
        return f"{self.start // 60:02}:{self.start % 60:02}-{self.end // 60:02}:{self.end % 60:02}"


def parse_hours(value: Any) -> HourRange:
    """Read `HH:MM-HH:MM`; the end may be `24:00`, and an end before the start wraps midnight."""
    if isinstance(value, HourRange):
        return value
    found = _HOURS.fullmatch(value) if isinstance(value, str) else None
    if found is None:
        raise expected("hours like '09:00-18:00'")
    h1, m1, h2, m2 = (int(part) for part in found.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if h1 > 23 or m1 > 59 or m2 > 59 or end > 24 * 60:
        raise expected("hours like '09:00-18:00' (00:00 to 24:00)")
    if start == end:
        raise expected("hours with an end different from the start (leave out hours for all day)")
    return HourRange(start, 0 if end == 24 * 60 and start > 0 else end)


Hours = Annotated[HourRange, PlainValidator(parse_hours), PlainSerializer(str)]


@dataclass(frozen=True, slots=True)
class Window:
    """Weekdays (0 is Monday) and hours in a zone, for a rule to apply.

    The hours after midnight of a wrapping range belong to the day the range started:
    `fri` with `22:00-06:00` includes Saturday 02:00 and not Friday 02:00.
    """

    days: frozenset[int]
    hours: HourRange | None
    zone: tzinfo

    def contains(self, now: datetime) -> bool:
        """Whether `now` (naive means UTC) falls inside the window."""
        local = (now if now.tzinfo is not None else now.replace(tzinfo=UTC)).astimezone(self.zone)
        day, minute = local.weekday(), local.hour * 60 + local.minute
        if self.hours is None:
            return day in self.days
        if not self.hours.wraps:
            return day in self.days and self.hours.start <= minute < self.hours.end
        if minute >= self.hours.start:
            return day in self.days
        return minute < self.hours.end and (day - 1) % 7 in self.days
