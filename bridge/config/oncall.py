"""The `oncall` config section: schedules, escalation policies, reply and silence settings."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Self

from pydantic import (
    BeforeValidator,
    Field,
    PlainSerializer,
    PlainValidator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from bridge.config import (
    BaseUrl,
    ConfigModel,
    ConfigPath,
    Duration,
    PositiveDuration,
    TimeZoneName,
    expected,
    parse_duration,
)
from bridge.plugin import BearerOrBasic
from bridge.rules import (
    DAY_NAMES,
    ContactConfig,
    Days,
    Directory,
    Hours,
    Listed,
    Text,
    UnresolvedError,
    as_list,
    parse_days,
)

GROUP_PREFIX = "group:"
SCHEDULE_PREFIX = "schedule:"
MIN_SHIFT = timedelta(hours=1)
MAX_REPEAT = 10  # every pass pages everyone again; the anchors stop at 5
_A_SHIFT = "a shift length like '1w', '1d' or '12h'"
_A_HANDOFF = "a handoff time like 'mon 10:00' (weekly shifts) or '10:00'"
_A_DATE = "a date like '2026-12-07'"
_A_LOCAL_TIME = "a local time like '2026-12-24 18:00'"
_HANDOFF = re.compile(r"\s*(?:([A-Za-z]+)\s+)?(\d{1,2}):(\d{2})\s*")
_WEEKS = re.compile(r"(\d+(?:\.\d+)?)\s*w")


def _weeks_as_days(found: re.Match[str]) -> str:
    days = float(found.group(1)) * 7
    return f"{int(days) if days.is_integer() else days}d"


def parse_shift(value: Any) -> timedelta:
    """Read a shift length: a duration (`12h`, `1d`), where `w` counts weeks too (`1w`, `2w`)."""
    if isinstance(value, str):
        value = _WEEKS.sub(_weeks_as_days, value)
    try:
        shift = parse_duration(value)
    except PydanticCustomError:
        raise expected(_A_SHIFT) from None
    if shift < MIN_SHIFT:
        raise expected(f"{_A_SHIFT}, of at least 1h")
    return shift


def _shift_text(shift: timedelta) -> str:
    seconds = int(shift.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True, slots=True)
class HandoffTime:
    """When shifts change hands, in the schedule's zone: a weekday (or every day) and a time."""

    weekday: int | None  # 0 is Monday; None: the shift length alone decides the day
    minute: int  # since midnight

    @property
    def time(self) -> time:
        return time(self.minute // 60, self.minute % 60)

    def __str__(self) -> str:
        clock = f"{self.minute // 60:02}:{self.minute % 60:02}"
        return clock if self.weekday is None else f"{DAY_NAMES[self.weekday]} {clock}"


def parse_handoff(value: Any) -> HandoffTime:
    """Read `mon 10:00` (a weekday and a time) or `10:00`."""
    if isinstance(value, HandoffTime):
        return value
    found = _HANDOFF.fullmatch(value) if isinstance(value, str) else None
    if found is None:
        raise expected(_A_HANDOFF)
    day, hour, minute = found.group(1), int(found.group(2)), int(found.group(3))
    if hour > 23 or minute > 59:
        raise expected(f"{_A_HANDOFF} (00:00 to 23:59)")
    weekday = None
    if day is not None:
        try:
            (weekday,) = parse_days(day)
        except ValueError:
            raise PydanticCustomError(
                "handoff_day",
                "unknown day '{day}' (days are {days})",
                {"day": day, "days": ", ".join(DAY_NAMES)},
            ) from None
    return HandoffTime(weekday, hour * 60 + minute)


def parse_date(value: Any) -> date:
    """Read a calendar date: YAML's own (`2026-12-07` unquoted) or the same text quoted."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise expected(_A_DATE)


def parse_local_time(value: Any) -> datetime:
    """Read a wall-clock time without an offset (`2026-12-24 18:00`); a date alone is midnight."""
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime.combine(value, time())
    elif isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise expected(_A_LOCAL_TIME) from None
    if not isinstance(value, datetime):
        raise expected(_A_LOCAL_TIME)
    if value.tzinfo is not None:
        raise expected(f"{_A_LOCAL_TIME}, without an offset: the schedule's timezone applies")
    return value


def _entry(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    kind, sep, name = value.partition(":")
    if sep and f"{kind}:" not in (GROUP_PREFIX, SCHEDULE_PREFIX):
        raise expected(f"a contact, {GROUP_PREFIX}NAME or {SCHEDULE_PREFIX}NAME, not '{kind}:'")
    if sep and not name.strip():
        raise expected(f"a name after '{kind}:'")
    return value


Shift = Annotated[timedelta, PlainValidator(parse_shift), PlainSerializer(_shift_text)]
Handoff = Annotated[HandoffTime, PlainValidator(parse_handoff), PlainSerializer(str)]
LocalDate = Annotated[date, PlainValidator(parse_date), PlainSerializer(str)]
LocalTime = Annotated[
    datetime,
    PlainValidator(parse_local_time),
    PlainSerializer(lambda value: value.isoformat(" ", "minutes")),
]
NotifyEntry = Annotated[Text, BeforeValidator(_entry)]


class RotationConfig(ConfigModel):
    """People taking turns: each holds one shift, and shifts change at the handoff time."""

    members: Annotated[list[Text], Field(min_length=1)]  # contacts (or groups), in turn
    shift: Shift  # `1w`, `1d`, `12h`: counted in local time, so handoffs keep the wall time
    handoff: Handoff  # `mon 10:00` (shifts of whole weeks) or `10:00`
    start: LocalDate  # the first member's first shift starts on this date at the handoff time
    end: LocalDate | None = None  # none: forever; else the rotation stops at handoff time then
    days: Days | None = None  # only on these days, e.g. `sat-sun` for a weekend layer
    hours: Hours | None = None  # only in these local hours, e.g. `09:00-18:00` for a day layer

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        day = self.handoff.weekday
        if day is not None and self.shift % timedelta(weeks=1):
            shift, clock = _shift_text(self.shift), f"{self.handoff.time:%H:%M}"
            raise ValueError(
                f"a handoff on a weekday ('{self.handoff}') needs a shift of whole weeks; "
                f"write the handoff as '{clock}' for a {shift} shift"
            )
        if day is not None and self.start.weekday() != day:
            ahead = self.start + timedelta(days=(day - self.start.weekday()) % 7)
            start_day = DAY_NAMES[self.start.weekday()]
            raise ValueError(
                f"start {self.start} is a {start_day}, and the handoff is on {DAY_NAMES[day]}; "
                f"start on {ahead}, say"
            )
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"end {self.end} must come after start {self.start}")
        return self


class OverrideConfig(ConfigModel):
    """Someone on call instead of the rotations, from one local time to another."""

    who: Text  # a contact (or group)
    from_: LocalTime = Field(alias="from")  # local time in the schedule's zone
    to: LocalTime  # local time in the schedule's zone; the override ends just before it

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.to <= self.from_:
            raise ValueError(f"'to' ({self.to:%Y-%m-%d %H:%M}) must come after 'from'")
        return self


class ScheduleConfig(ConfigModel):
    """Who is on call when: a rotation, layers on top of it, and overrides on top of all.

    Layers are stacked in order after `rotation`: at any instant the last one that has someone on
    call decides (a layer is empty before its start, after its end and outside its days and
    hours). An override wins over every layer; of two overlapping overrides, the later one listed.
    """

    timezone: TimeZoneName  # handoff times, dates and overrides are local times in this zone
    rotation: RotationConfig | None = None
    layers: list[RotationConfig] = Field(default_factory=list)  # later layers win where staffed
    overrides: list[OverrideConfig] = Field(default_factory=list)
    handoff_sms: bool = False  # text whoever comes on call, once at each handoff

    @model_validator(mode="after")
    def _has_a_rotation(self) -> Self:
        if self.rotation is None and not self.layers:
            raise ValueError("a schedule needs a rotation, layers, or both")
        return self

    def rotations(self) -> list[RotationConfig]:
        """The rotation and then the layers: the order in which later ones win."""
        return ([self.rotation] if self.rotation is not None else []) + list(self.layers)


class StepConfig(ConfigModel):
    """One escalation step: whom to page, and how long after the step before."""

    notify: Annotated[list[NotifyEntry], BeforeValidator(as_list), Field(min_length=1)]
    # From the previous step. The first step pages at once; on a repeat it counts from the last.
    after: Duration = timedelta()


class PolicyConfig(ConfigModel):
    """An escalation policy: steps paged in turn until someone acknowledges."""

    steps: Annotated[list[StepConfig], Field(min_length=1)]
    repeat: Annotated[int, Field(ge=0, le=MAX_REPEAT)] = 0  # extra passes; 0 is one pass
    ack_timeout: PositiveDuration | None = None  # none: an acknowledgement holds until resolved
    report_timeout: PositiveDuration = timedelta(minutes=5)  # no delivery report by then: failed

    @model_validator(mode="after")
    def _repeat_waits(self) -> Self:
        if self.repeat and not self.steps[0].after:
            raise ValueError(
                "with repeat, the first step needs 'after': the wait from the last step to the "
                "next pass (the first pass still pages at once)"
            )
        return self


class SilenceAuth(BearerOrBasic):
    """Exactly one of a `bearer` token or `basic` credentials for Alertmanager's API."""


class SilencesConfig(ConfigModel):
    """The Alertmanager that `ack 2h` creates silences in (its v2 API)."""

    url: BaseUrl  # e.g. http://alertmanager:9093
    auth: SilenceAuth | None = None


class OncallConfig(ConfigModel):
    """Paging: on-call schedules, escalation policies, and how replies act on pages."""

    schedules: dict[str, ScheduleConfig] = Field(default_factory=dict)
    policies: dict[str, PolicyConfig] = Field(default_factory=dict)
    help_per_day: Annotated[int, Field(ge=0)] = 3  # help answers to unreadable replies, per number
    critical: Annotated[Listed, Field(min_length=1)] = Field(default_factory=lambda: ["critical"])
    ack_max: PositiveDuration = timedelta(hours=24)  # the longest silence `ack 2h` may ask for
    alertmanager: SilencesConfig | None = None


def check_references(
    oncall: OncallConfig,
    contacts: Mapping[str, ContactConfig],
    groups: Mapping[str, Sequence[str]],
) -> list[tuple[ConfigPath, str]]:
    """Every name in `oncall` that is no contact, group, number or schedule, with its path."""
    problems: list[tuple[ConfigPath, str]] = []
    directory = Directory(contacts, groups)

    def check(path: ConfigPath, entry: str) -> None:
        try:
            directory.check(entry)
        except UnresolvedError as exc:
            problems.append((path, str(exc)))

    for name, schedule in oncall.schedules.items():
        where: ConfigPath = ("oncall", "schedules", name)
        rotations: list[tuple[ConfigPath, RotationConfig]] = [
            ((*where, "layers", index), layer) for index, layer in enumerate(schedule.layers)
        ]
        if schedule.rotation is not None:
            rotations.insert(0, ((*where, "rotation"), schedule.rotation))
        for at, rotation in rotations:
            for index, member in enumerate(rotation.members):
                check((*at, "members", index), member)
        for index, override in enumerate(schedule.overrides):
            check((*where, "overrides", index, "who"), override.who)
    for name, policy in oncall.policies.items():
        for number, step in enumerate(policy.steps):
            for index, entry in enumerate(step.notify):
                path: ConfigPath = ("oncall", "policies", name, "steps", number, "notify", index)
                problem = _notify_problem(entry, oncall.schedules, groups)
                if problem is not None:
                    problems.append((path, problem))
                elif not entry.startswith((GROUP_PREFIX, SCHEDULE_PREFIX)):
                    check(path, entry)
    return problems


def _notify_problem(
    entry: str, schedules: Mapping[str, ScheduleConfig], groups: Mapping[str, Sequence[str]]
) -> str | None:
    for prefix, defined, what in (
        (SCHEDULE_PREFIX, schedules, "schedule"),
        (GROUP_PREFIX, groups, "group"),
    ):
        if entry.startswith(prefix):
            name = entry.removeprefix(prefix)
            if name in defined:
                return None
            close = difflib.get_close_matches(name, list(defined), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            listed = f"defined: {', '.join(sorted(defined))}" if defined else f"no {what}s defined"
            return f"unknown {what} '{name}'{hint} ({listed})"
    return None
