"""Checks requests against the gateway's rules first, so it never answers -4 for our mistake."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bridge.plugins.c123.errors import InvalidRequestError
from bridge.sms import InvalidNumberError, normalize_number

SEPARATOR = "{|}"  # joins per-number contents and parameter values on the wire
PLACEHOLDER = re.compile(r"\{p(\d+)\}")
_ACCOUNT = re.compile(r"[^@\s]+@[^@\s]+")
_KEY = re.compile(r"[0-9A-Z]{32}")
# XML 1.0 carries only these characters, even escaped: the gateway could never hand back others.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def is_xml_text(text: str) -> bool:
    """True when every character of text is allowed in an XML 1.0 document."""
    return _NOT_XML.search(text) is None


@dataclass(frozen=True, slots=True)
class Limits:
    """The gateway's documented limits for one call."""

    max_content_chars: int = 1000
    max_once_numbers: int = 1000
    min_batch_numbers: int = 2
    max_batch_numbers: int = 100
    max_params: int = 10
    min_schedule_lead: timedelta = timedelta(minutes=1)


DEFAULT_LIMITS = Limits()


def check_account(account: str) -> str:
    """The account, which must be `employee@enterprise`."""
    if not _ACCOUNT.fullmatch(account):
        raise InvalidRequestError("gateway.account", "must look like employee@enterprise")
    return account


def check_key(key: str) -> str:
    """The key, which must be 32 upper-case letters and digits (the value is never echoed)."""
    if not _KEY.fullmatch(key):
        raise InvalidRequestError(
            "gateway.authkey", f"must be 32 upper-case letters and digits (got {len(key)} chars)"
        )
    return key


def check_content(text: str, field: str = "content", limits: Limits = DEFAULT_LIMITS) -> str:
    """A text between 1 and the maximum characters, with nothing the gateway cannot carry."""
    if not text:
        raise InvalidRequestError(field, "must not be empty")
    if len(text) > limits.max_content_chars:
        raise InvalidRequestError(
            field, f"has {len(text)} characters; the limit is {limits.max_content_chars}"
        )
    bad = _NOT_XML.search(text)
    if bad:
        raise InvalidRequestError(
            field, f"contains control character U+{ord(bad.group()):04X}, which SMS cannot carry"
        )
    return text


def _check_joinable(text: str, field: str) -> None:
    if SEPARATOR in text:
        raise InvalidRequestError(field, f"must not contain {SEPARATOR!r}, the gateway's separator")


def check_numbers(
    numbers: Sequence[str], low: int, high: int, field: str = "numbers", *, distinct: bool = False
) -> list[str]:
    """Normalised, de-duplicated numbers, between `low` and `high` of them.

    With `distinct`, a repeated number is an error instead: each one carries its own text.
    """
    normalised: dict[str, None] = {}
    for index, raw in enumerate(numbers):
        try:
            number = normalize_number(raw)
        except InvalidNumberError as exc:
            raise InvalidRequestError(f"{field}[{index}]", str(exc)) from None
        if distinct and number in normalised:
            raise InvalidRequestError(
                f"{field}[{index}]", "appears twice; each number takes one text"
            )
        normalised[number] = None
    count = len(normalised)
    if not low <= count <= high:
        raise InvalidRequestError(field, f"has {count} numbers; one call takes {low} to {high}")
    return list(normalised)


def check_pairs(
    pairs: Sequence[tuple[str, str]], limits: Limits = DEFAULT_LIMITS
) -> list[tuple[str, str]]:
    """Per-number texts for sendBatch: 2..100 distinct numbers, one valid content each."""
    numbers = check_numbers(
        [number for number, _ in pairs],
        limits.min_batch_numbers,
        limits.max_batch_numbers,
        distinct=True,
    )
    for index, (_, text) in enumerate(pairs):
        check_content(text, f"contents[{index}]", limits)
        _check_joinable(text, f"contents[{index}]")
    return [(number, text) for number, (_, text) in zip(numbers, pairs, strict=True)]


def check_params(
    template: str,
    params: Mapping[str, Sequence[str]],
    count: int,
    limits: Limits = DEFAULT_LIMITS,
) -> dict[str, list[str]]:
    """sendParam parameters: p1..p10, each used placeholder given, one value per number."""
    check_content(template, "template", limits)
    used = {f"p{n}" for n in PLACEHOLDER.findall(template)}
    if not used:
        raise InvalidRequestError("template", "has no {p1}..{p10} placeholder")
    allowed = {f"p{n}" for n in range(1, limits.max_params + 1)}
    for name in sorted(used | set(params)):
        if name not in allowed:
            raise InvalidRequestError(f"params.{name}", "only p1..p10 exist (lower-case p)")
    for name in sorted(used - set(params)):
        raise InvalidRequestError(f"params.{name}", "is used in the template but has no values")
    checked: dict[str, list[str]] = {}
    for name, values in sorted(params.items()):
        if len(values) != count:
            raise InvalidRequestError(
                f"params.{name}", f"has {len(values)} values; there are {count} numbers"
            )
        for index, value in enumerate(values):
            _check_joinable(value, f"params.{name}[{index}]")
            bad = _NOT_XML.search(value)
            if bad:
                raise InvalidRequestError(
                    f"params.{name}[{index}]",
                    f"contains control character U+{ord(bad.group()):04X}",
                )
        checked[name] = list(values)
    return checked


def render_param(template: str, params: Mapping[str, Sequence[str]], index: int) -> str:
    """The text the number at `index` receives from a sendParam template."""
    return PLACEHOLDER.sub(lambda m: params[f"p{m.group(1)}"][index], template)


def check_schedule(
    at: datetime | None, zone: ZoneInfo, now: datetime, limits: Limits = DEFAULT_LIMITS
) -> str | None:
    """The wire form `yyyyMMddHHmmss` of a schedule time in the gateway's zone, or None."""
    if at is None:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=zone)
    if at.microsecond:
        # The wire form has whole seconds; rounding down could land inside the gateway's minute.
        at = at.replace(microsecond=0) + timedelta(seconds=1)
    earliest = now + limits.min_schedule_lead
    if at < earliest:
        raise InvalidRequestError(
            "at", f"must be at least {int(limits.min_schedule_lead.total_seconds())} s from now"
        )
    return at.astimezone(zone).strftime("%Y%m%d%H%M%S")
