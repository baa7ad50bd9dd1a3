"""Sandboxed Jinja2 rendering for SMS and chat texts, with filters that know SMS segment rules."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import ChainableUndefined, Template, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from bridge.events import Event, EventKind, Status
from bridge.sms import MULTI_SEGMENT_CHARS, SINGLE_SEGMENT_CHARS, mask_text, sms_length
from bridge.text import clean

ELLIPSIS = "…"

# One event. The status is shown for alerts only: a chat command or a reply is never "FIRING".
DEFAULT_TEMPLATE = (
    '{% if kind == "alert" %}[{{ status|upper }}] {% endif %}'
    "{{ labels.alertname or text|oneline }}"
    "{% if labels.instance %} {{ labels.instance|shorten(40) }}{% endif %}"
    "{% set detail = labels.summary or data.annotations.summary"
    ' or (text if labels.alertname else "") %}'
    "{% if detail %}: {{ detail|oneline }}{% endif %}"
)

# A group: `[FIRING:5] HighLatency db1, db2 (+3)`, or with some of them over by now
# `[FIRING:2] HighLatency db1, db2; [RESOLVED:1] db3`. Each alert is there once, as it is now.
DEFAULT_GROUP_TEMPLATE = (
    '[{{ status|upper }}:{{ firing if status == "firing" else resolved }}] '
    '{{ group_labels.values()|select|join(" ") or alerts[0].labels.alertname or alerts[0].text }}'
    '{% set instances = alerts|selectattr("status", "equalto", status)'
    '|map(attribute="labels.instance")|select|unique|list %}'
    "{% if instances %} {{ instances|join_more(2) }}{% endif %}"
    '{% if status == "firing" and resolved %}; [RESOLVED:{{ resolved }}]'
    '{% set over = alerts|selectattr("status", "equalto", "resolved")'
    '|map(attribute="labels.instance")|select|unique|list %}'
    "{% if over %} {{ over|join_more(2) }}{% endif %}{% endif %}"
    # What the alerts say (their summary annotation), when they all say the same.
    '{% set said = alerts|selectattr("status", "equalto", status)|map(attribute="summary")'
    "|select|unique|list %}"
    "{% if said|length == 1 %}: {{ said[0]|oneline }}{% endif %}"
)

# A message to a chat or callback output: not cut to SMS segments, so it may say a little more.
DEFAULT_POST_TEMPLATE = (
    '{% if kind == "alert" %}[{{ status|upper }}] {% endif %}'
    "{{ labels.alertname or text }}"
    "{% if labels.instance %} {{ labels.instance }}{% endif %}"
    "{% set detail = labels.summary or data.annotations.summary"
    ' or (text if labels.alertname else "") %}'
    "{% if detail %}: {{ detail }}{% endif %}"
)

_WHITESPACE = re.compile(r"\s+")
_AGE_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


class TemplateError(ValueError):
    """A template that does not compile: bad syntax, or a filter or test that does not exist."""


@dataclass(frozen=True, slots=True)
class Rendered:
    """A rendered text; `error` says why the fallback text was used instead of the template."""

    text: str
    error: str | None = None


def _budget(segments: int) -> int:
    return SINGLE_SEGMENT_CHARS if segments <= 1 else MULTI_SEGMENT_CHARS * segments


def truncate_segments(text: Any, segments: int = 1, signature: str = "") -> str:
    """Cut `text` so that it and `signature` fit `segments` SMS parts, ending it with "…"."""
    whole = str(text)
    budget = _budget(int(segments))
    if sms_length(whole) + sms_length(signature) <= budget:
        return whole
    room = budget - sms_length(signature) - sms_length(ELLIPSIS)
    if room < 0:
        return ""  # the signature alone is too long: nothing can fit
    used = cut = 0
    for index, char in enumerate(whole):
        used += sms_length(char)
        if used > room:
            break
        cut = index + 1
    return whole[:cut].rstrip() + ELLIPSIS


def join_more(items: Any, limit: int = 3, sep: str = ", ") -> str:
    """Join the first `limit` items, then count the rest: `db1, db2 (+3)`."""
    values = [items] if isinstance(items, str) else list(items)
    limit = max(0, int(limit))
    shown = sep.join(str(item) for item in values[:limit])
    rest = len(values) - limit
    if rest <= 0:
        return shown
    return f"{shown} (+{rest})" if shown else f"(+{rest})"


def shorten(text: Any, width: int = 40, placeholder: str = ELLIPSIS) -> str:
    """Cut a long value (a label, an URL) to `width` characters, ending it with "…"."""
    whole = str(text)
    width = max(int(width), len(placeholder))
    if len(whole) <= width:
        return whole
    return whole[: width - len(placeholder)].rstrip() + placeholder


def oneline(text: Any) -> str:
    """Put a text on one line: every run of whitespace, newlines included, becomes one space."""
    return _WHITESPACE.sub(" ", str(text)).strip()


def mask(text: Any) -> str:
    """Mask every mobile number in a text: 151****0086."""
    return mask_text(str(text))


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def format_age(span: timedelta) -> str:
    """A compact duration for a phone screen: `45s`, `5m`, `1h5m`, `2d3h`."""
    seconds = max(0, int(span.total_seconds()))
    parts: list[str] = []
    for unit, size in _AGE_UNITS:
        amount, seconds = divmod(seconds, size)
        if amount or (not parts and unit == "s"):
            parts.append(f"{amount}{unit}")
        if len(parts) == 2:
            break
    return "".join(parts)


def age(start: Any, now: Any) -> str:
    """How long before `now` a datetime or ISO text was: `{{ data.startsAt|age(now) }}`."""
    begin, end = _as_datetime(start), _as_datetime(now)
    if begin is None or end is None:
        return ""
    return format_age(end - begin)


def _localtime(zone: tzinfo) -> Any:
    def localtime(value: Any, fmt: str = "%m-%d %H:%M", tz: str | None = None) -> str:
        """A datetime or ISO text in the rules' zone (or `tz`): `{{ now|localtime }}`."""
        moment = _as_datetime(value)
        if moment is None:
            return str(value)
        if tz is not None:
            return moment.astimezone(ZoneInfo(tz)).strftime(fmt)
        return moment.astimezone(zone).strftime(fmt)

    return localtime


def alert_summary(event: Event, width: int | None = None) -> str:
    """What the alert says about itself, on one line: its summary label, else its summary
    annotation ('' when it has neither); cut to `width` characters when given."""
    annotations = event.data.get("annotations") if isinstance(event.data, Mapping) else None
    said = event.labels.get("summary") or (
        annotations.get("summary") if isinstance(annotations, Mapping) else None
    )
    text = oneline(said) if said else ""
    return shorten(text, width) if width is not None else text


def event_context(event: Event, now: datetime) -> dict[str, Any]:
    """What a template for one event sees."""
    return {
        "summary": alert_summary(event),
        "event": event,
        "kind": event.kind.value,
        "source": event.source,
        "status": event.status.value,
        "labels": dict(event.labels),
        "text": event.text,
        "data": event.data,
        "fingerprint": event.fingerprint,
        "now": now,
    }


def _alert_identity(event: Event) -> tuple[object, ...]:
    if event.fingerprint:
        return ("fingerprint", event.fingerprint)
    labels = tuple(sorted(event.labels.items()))
    return ("labels", event.source, labels, "" if labels else event.text)


def latest_per_alert(events: Sequence[Event]) -> list[Event]:
    """Each alert once, as its latest event says, in the order alerts first appeared.

    An alert that fired and resolved within one group wait is a resolved alert, not one of each.
    An alert is known by its fingerprint, else by its source and labels (its text if it has none).
    """
    latest: dict[tuple[object, ...], Event] = {}
    for event in events:
        latest[_alert_identity(event)] = event  # a dict keeps the first position of a key
    return list(latest.values())


def group_context(
    events: Sequence[Event], group_by: Sequence[str], now: datetime
) -> dict[str, Any]:
    """What a group template sees: each alert once with its latest status, the counts, and the
    labels they share."""
    events = latest_per_alert(events)
    firing = sum(event.status is Status.FIRING for event in events)
    first = events[0].labels if events else {}
    common = {
        name: value
        for name, value in first.items()
        if all(event.labels.get(name) == value for event in events)
    }
    return {
        "alerts": [event_context(event, now) for event in events],
        "status": (Status.FIRING if firing else Status.RESOLVED).value,
        "count": len(events),
        "firing": firing,
        "resolved": len(events) - firing,
        "group_labels": {name: first.get(name, "") for name in group_by},
        "common_labels": common,
        "now": now,
    }


def _headline(labels: Mapping[str, str], text: str, kind: str) -> str:
    return clean(labels.get("alertname", "")).strip() or clean(oneline(text)).strip() or kind


def fallback_text(event: Event) -> str:
    """The text used when a template fails at render time: plain, still saying what and status."""
    name = _headline(event.labels, event.text, event.kind.value)
    if event.kind is EventKind.ALERT:
        return f"[{event.status.value.upper()}] {name}"
    return name


def group_fallback_text(events: Sequence[Event], group_by: Sequence[str]) -> str:
    """The fallback for a group summary: `[FIRING:5] HighLatency`, each alert counted once."""
    events = latest_per_alert(events)
    firing = sum(event.status is Status.FIRING for event in events)
    status, count = ("FIRING", firing) if firing else ("RESOLVED", len(events))
    first = events[0]
    values = [first.labels.get(name, "") for name in group_by]
    name = clean(" ".join(value for value in values if value)).strip()
    return f"[{status}:{count}] {name or _headline(first.labels, first.text, first.kind.value)}"


def make_environment(signature: str = "", zone: tzinfo = UTC) -> ImmutableSandboxedEnvironment:
    """The template environment: sandboxed, no escaping, and a missing value renders empty.

    Undefined values chain (`labels.x.y` is empty, not an error): an alert without the label a
    template expects must still page someone. Syntax and unknown filters are caught at load.
    The immutable sandbox keeps templates from changing event data other rules still read.
    """
    env = ImmutableSandboxedEnvironment(
        autoescape=False,
        undefined=ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )

    def segments(text: Any, count: int = 1) -> str:
        return truncate_segments(text, count, signature)

    env.filters.update(
        truncate_segments=segments,
        join_more=join_more,
        shorten=shorten,
        oneline=oneline,
        mask=mask,
        age=age,
        localtime=_localtime(zone),
    )
    return env


_CHECKER = make_environment()


def compile_template(source: str, env: ImmutableSandboxedEnvironment | None = None) -> Template:
    """Compile a template; raises TemplateError naming the line inside the template."""
    try:
        return (env or _CHECKER).from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template error on line {exc.lineno}: {exc.message}") from None


def check_template(source: str) -> str:
    """Validate a template's syntax and filter names (for config models); returns it unchanged."""
    compile_template(source)
    return source


def render(
    template: Template, context: Mapping[str, Any], fallback: str, *, one_line: bool = False
) -> Rendered:
    """Render, never raising: on any error (or an empty text) return `fallback` and the reason.

    Event fields are stored as they came; every text leaving here is clean (bridge.text.clean),
    so an escape sequence in a label can neither make an SMS unsendable nor reach a chat.
    `one_line` is for SMS: newlines become spaces there, chat texts keep them.
    """
    keep_newlines = not one_line
    try:
        text = clean(template.render(context), keep_newlines=keep_newlines).strip()
    except Exception as exc:  # a bad template must not stop a page at 3 a.m.
        reason = mask_text(f"{type(exc).__name__}: {exc}")
        return Rendered(clean(fallback, keep_newlines=keep_newlines), reason)
    if not text:
        return Rendered(
            clean(fallback, keep_newlines=keep_newlines), "the template rendered an empty text"
        )
    return Rendered(text)
