"""The gateway's rules for a send request: numbers, contents, templates and schedule time (-4)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bridge.plugins.c123.models import Action
from bridge.sms import InvalidNumberError, normalize_number

MAX_CONTENT_CHARS = 1000
MIN_BATCH_NUMBERS = 2
MAX_BATCH_NUMBERS = 100
MAX_PARAMS = 10
SCHEDULE_LEAD = timedelta(seconds=60)
SEPARATOR = "{|}"

_PLACEHOLDER = re.compile(r"\{p([0-9]+)\}")
_PARAM_NAME = re.compile(r"p([0-9]+)")
_SCHEDULE = re.compile(r"[0-9]{14}")


class BadParameters(Exception):  # noqa: N818 - named after the gateway's -4 meaning
    """The request breaks a parameter rule: the gateway answers -4."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class PlannedMessage:
    """One text to one number, rendered as the phone will receive it (before the signature)."""

    mobile: str
    content: str


@dataclass(frozen=True, slots=True)
class SendPlan:
    """A valid send request, ready to bill: its messages in request order and its schedule."""

    action: Action
    messages: tuple[PlannedMessage, ...]
    scheduled_for: datetime | None


def plan_send(
    action: Action,
    params: Mapping[str, str],
    *,
    now: datetime,
    tz: ZoneInfo,
    max_once_numbers: int,
) -> SendPlan:
    """Validate a send request the way the gateway does; raise BadParameters for -4."""
    content = params.get("c", "")
    if action is Action.SEND_ONCE:
        numbers = _numbers(params, 1, max_once_numbers)
        _check_content(content)
        messages = [PlannedMessage(number, content) for number in numbers]
    elif action is Action.SEND_BATCH:
        numbers = _numbers(params, MIN_BATCH_NUMBERS, MAX_BATCH_NUMBERS)
        contents = content.split(SEPARATOR)
        if len(contents) != len(numbers):
            raise BadParameters(f"{len(contents)} contents for {len(numbers)} numbers")
        for text in contents:
            _check_content(text)
        messages = [PlannedMessage(n, text) for n, text in zip(numbers, contents, strict=True)]
    elif action is Action.SEND_PARAM:
        numbers = _numbers(params, MIN_BATCH_NUMBERS, MAX_BATCH_NUMBERS)
        _check_content(content)
        texts = render_template(content, params, len(numbers))
        for text in texts:
            _check_content(text)
        messages = [PlannedMessage(n, text) for n, text in zip(numbers, texts, strict=True)]
    else:
        raise ValueError(f"{action.value} is not a send action")
    return SendPlan(action, tuple(messages), _schedule(params.get("t", ""), now, tz))


def render_template(template: str, params: Mapping[str, str], count: int) -> list[str]:
    """Each number's text: every {pN} replaced by that number's value of the pN list."""
    values: dict[int, list[str]] = {}
    for name, raw in params.items():
        match = _PARAM_NAME.fullmatch(name)
        if match is None:
            continue
        index = _param_index(match.group(1))
        values[index] = raw.split(SEPARATOR)
        if len(values[index]) != count:
            raise BadParameters(f"{name} has {len(values[index])} values for {count} numbers")
    for match in _PLACEHOLDER.finditer(template):
        index = _param_index(match.group(1))
        if index not in values:
            raise BadParameters(f"placeholder {match.group(0)} has no p{index} parameter")
    return [_render(template, values, i) for i in range(count)]


def _render(template: str, values: Mapping[int, list[str]], position: int) -> str:
    return _PLACEHOLDER.sub(lambda match: values[int(match.group(1))][position], template)


def _param_index(digits: str) -> int:
    # "p01" would silently alias p1; the gateway's names are exactly p1..p10.
    index = int(digits[:3])
    if str(index) != digits or not 1 <= index <= MAX_PARAMS:
        raise BadParameters(f"p{digits} is not one of p1..p{MAX_PARAMS}")
    return index


def _numbers(params: Mapping[str, str], least: int, most: int) -> list[str]:
    raw = params.get("m", "")
    numbers = raw.split(",") if raw else []
    if not least <= len(numbers) <= most:
        raise BadParameters(f"{len(numbers)} numbers, allowed {least}..{most}")
    if not all(is_bare_number(number) for number in numbers):
        raise BadParameters("a number is not 11 digits starting with 1")
    return numbers


def is_bare_number(number: str) -> bool:
    """True for a number as the gateway takes it: 11 ASCII digits starting with 1, no prefix."""
    # A bare number is its own normal form; isascii() because bridge.sms's \d also matches
    # other scripts' digits such as "١".
    try:
        return number.isascii() and normalize_number(number) == number
    except InvalidNumberError:
        return False


def _check_content(text: str) -> None:
    if not text:
        raise BadParameters("empty content")
    if len(text) > MAX_CONTENT_CHARS:
        raise BadParameters(f"content of {len(text)} characters, at most {MAX_CONTENT_CHARS}")


def _schedule(raw: str, now: datetime, tz: ZoneInfo) -> datetime | None:
    if not raw:
        return None
    if not _SCHEDULE.fullmatch(raw):
        raise BadParameters("t is not yyyyMMddHHmmss")
    try:
        when = datetime.strptime(raw, "%Y%m%d%H%M%S").replace(tzinfo=tz)
    except ValueError:
        raise BadParameters("t is not a real date and time") from None
    if when < now + SCHEDULE_LEAD:
        raise BadParameters("t is less than a minute from now")
    return when
