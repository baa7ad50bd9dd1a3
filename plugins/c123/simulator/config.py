"""Settings of the simulated gateway: accounts, timing, quirks, and the faults it can inject."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bridge.plugins.c123.models import Action

DEFAULT_ACCOUNT = "1001@500008880001"
# A fixed, public test key: it opens this simulator and nothing else. Never use it for real.
DEFAULT_AUTHKEY = "5143A4B11D9C8E7F6A2B3C4D5E6F7A8B"
DEFAULT_SIGNATURE = "【smsbridge】"
DEFAULT_BALANCE = Decimal("100.000")
DEFAULT_PRICE = Decimal("0.10")
DEFAULT_TIMEZONE = "Asia/Shanghai"


class InvalidInput(ValueError):  # noqa: N818 - reads as "raise InvalidInput(field, ...)"
    """A setting, fault or admin value the simulator cannot take; names the offending field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True, slots=True)
class SimAccount:
    """One gateway account as configured: key, money, signatures, channel groups, flags."""

    ac: str = DEFAULT_ACCOUNT
    authkey: str = DEFAULT_AUTHKEY
    balance: Decimal = DEFAULT_BALANCE
    price: Decimal = DEFAULT_PRICE
    signatures: Mapping[int, str] = field(default_factory=lambda: {0: DEFAULT_SIGNATURE})
    channel_groups: frozenset[int] | None = None  # None allows every channel group
    timezone: str = DEFAULT_TIMEZONE
    key_locked: bool = False
    account_locked: bool = False
    api_disabled: bool = False

    def __post_init__(self) -> None:
        employee, _, enterprise = self.ac.partition("@")
        if not employee or not enterprise or "@" in enterprise:
            raise InvalidInput("ac", "must be employee@enterprise")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidInput("timezone", f"unknown time zone {self.timezone!r}") from None

    @property
    def employee_id(self) -> str:
        """The `sid` of answers: the part before the @."""
        return self.ac.partition("@")[0]

    @property
    def enterprise_id(self) -> str:
        """The `cid` of answers: the part after the @."""
        return self.ac.partition("@")[2]

    @property
    def zone(self) -> ZoneInfo:
        """The time zone that schedule times (`t`) are read in."""
        return ZoneInfo(self.timezone)


@dataclass(frozen=True, slots=True)
class SimulatorSettings:
    """How the simulated gateway behaves; the defaults work out of the box."""

    accounts: tuple[SimAccount, ...] = (SimAccount(),)
    report_delay: float = 1.0  # seconds from sending (or the schedule time) to the report
    rate_limit: float | None = 50.0  # calls a second per account; 0 or None turns it off
    rate_burst: int = 100
    carrier_codes: Mapping[str, str] = field(default_factory=dict)  # mobile -> code, else DELIVRD
    zero_result_quirk: bool = False  # DELIVRD reports carry result="0", as seen in the wild
    reply_time_millis: bool = False  # getReply times in milliseconds, as the provider's example
    max_once_numbers: int = 1000
    key_lock_after: int = 5  # consecutive wrong keys that lock the key

    def __post_init__(self) -> None:
        if not self.accounts:
            raise InvalidInput("accounts", "at least one account is needed")
        if len({account.ac for account in self.accounts}) != len(self.accounts):
            raise InvalidInput("accounts", "two accounts share a name")
        if not seconds_ok(self.report_delay):
            raise InvalidInput("report_delay", "must be a non-negative number of seconds")
        if self.rate_limit is not None and not seconds_ok(self.rate_limit):
            raise InvalidInput("rate_limit", "must be a non-negative rate")
        for name in ("rate_burst", "max_once_numbers", "key_lock_after"):
            if getattr(self, name) < 1:
                raise InvalidInput(name, "must be at least 1")


_E = TypeVar("_E", "FaultKind", "MalformedVariant", Action)


class FaultKind(StrEnum):
    """Ways the simulator can misbehave on purpose."""

    DELAY = "delay"  # wait `seconds`, then answer normally
    DROP = "drop"  # close the connection before processing anything
    HTTP500 = "http500"  # answer HTTP 500 without processing
    MALFORMED = "malformed"  # answer 200 with a body that is not the protocol's XML
    CODE = "code"  # answer a forced result code without processing
    ACCEPT_THEN_DROP = "accept_then_drop"  # process fully, then close without answering
    HOLD = "hold"  # process fully (a read hands its records out), answer `seconds` later


class MalformedVariant(StrEnum):
    """Which broken body a `malformed` fault answers with."""

    HTML = "html"
    TRUNCATED = "truncated"
    WRONG_ROOT = "wrong_root"
    EMPTY = "empty"


@dataclass(slots=True)
class Fault:
    """A queued fault: applies to the next `count` calls of `action` (of any action if None)."""

    kind: FaultKind
    count: int = 1
    action: Action | None = None
    seconds: float = 0.0
    code: int | None = None
    variant: MalformedVariant = MalformedVariant.HTML

    def __post_init__(self) -> None:
        self.kind = member_of(FaultKind, self.kind, "kind")
        self.variant = member_of(MalformedVariant, self.variant, "variant")
        if self.action is not None:
            self.action = member_of(Action, self.action, "action")
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise InvalidInput("count", "must be a whole number of calls, at least 1")
        if isinstance(self.seconds, bool) or not isinstance(self.seconds, int | float):
            raise InvalidInput("seconds", "must be a number of seconds")
        if not seconds_ok(self.seconds):
            raise InvalidInput("seconds", "must be a non-negative number of seconds")
        if self.kind is FaultKind.CODE and (
            isinstance(self.code, bool) or not isinstance(self.code, int)
        ):
            raise InvalidInput("code", "a code fault needs an integer result code")


def seconds_ok(value: float) -> bool:
    """True for a finite, non-negative number."""
    return math.isfinite(value) and value >= 0


def member_of(enum: type[_E], value: object, name: str) -> _E:
    """The enum member for value, or InvalidInput naming the field and the allowed values."""
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return enum(value)
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        raise InvalidInput(name, f"{value!r} is not one of {allowed}") from None
