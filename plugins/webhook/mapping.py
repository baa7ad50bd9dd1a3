"""Turning arbitrary posted JSON into Events by dotted paths; what cannot be is a MappingError."""

from __future__ import annotations

import json
from typing import Any, Final

from bridge.events import Event, EventKind, Status
from bridge.plugin import sha256_hex
from bridge.plugins.webhook.config import FieldsConfig

STATUS_WORDS: Final = {
    "firing": Status.FIRING,
    "alerting": Status.FIRING,
    "problem": Status.FIRING,
    "resolved": Status.RESOLVED,
    "ok": Status.RESOLVED,
    "normal": Status.RESOLVED,
}
_STATUS_HELP = "firing or resolved (or alerting, problem, ok, normal)"


class MappingError(ValueError):
    """A posted document cannot become an Event; the message is the 422 answer."""


class _Missing:
    """The path leads nowhere (absent key, index out of range, or through a non-container)."""


MISSING: Final = _Missing()


def lookup(document: Any, path: str) -> Any:
    """The value at a dotted path (`host.name`, `items.0.id`), or MISSING."""
    current = document
    for part in path.split("."):
        if isinstance(current, dict):
            current = current.get(part, MISSING)
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return MISSING
    return current


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "null"


def as_text(value: Any) -> str:
    """Strings as they are; anything else in its JSON spelling (true, 3.5, {"a":1})."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _absent(value: Any) -> bool:
    return value is MISSING or value is None


def _status(item: dict[str, Any], path: str, where: str) -> Status:
    value = lookup(item, path)
    if _absent(value):
        return Status.FIRING
    if not isinstance(value, str):
        raise MappingError(f"{where}{path}: expected {_STATUS_HELP}, got {json_type(value)}")
    status = STATUS_WORDS.get(value.strip().lower())
    if status is None:
        raise MappingError(f"{where}{path}: expected {_STATUS_HELP}, got {value[:40]!r}")
    return status


def _labels(item: dict[str, Any], fields: FieldsConfig, where: str) -> dict[str, str]:
    value = lookup(item, fields.labels)
    if _absent(value):
        labels = {}
    elif isinstance(value, dict):
        labels = {key: as_text(entry) for key, entry in value.items() if entry is not None}
    else:
        raise MappingError(f"{where}{fields.labels}: expected an object, got {json_type(value)}")
    for name, path in fields.extra_labels.items():
        extra = lookup(item, path)
        if not _absent(extra):
            labels[name] = as_text(extra)
    return labels


def map_item(
    item: dict[str, Any], fields: FieldsConfig, *, kind: EventKind, source: str, where: str = ""
) -> Event:
    """One posted object as an Event; `where` prefixes messages (`[2].` for a list's third)."""
    labels = _labels(item, fields, where)
    text_value = lookup(item, fields.text)
    text = "" if _absent(text_value) else as_text(text_value)
    status = _status(item, fields.status, where)
    given = MISSING if fields.fingerprint is None else lookup(item, fields.fingerprint)
    fingerprint = (
        sha256_hex(sorted(labels.items()), text)[:16] if _absent(given) else as_text(given)
    )
    return Event(
        kind=kind,
        source=source,
        labels=labels,
        text=text,
        data=item,
        fingerprint=fingerprint,
        status=status,
    )


def map_body(body: Any, fields: FieldsConfig, *, kind: EventKind, source: str) -> list[Event]:
    """A posted object as one Event, a list of objects as one each; anything else is refused."""
    if isinstance(body, dict):
        return [map_item(body, fields, kind=kind, source=source)]
    if not isinstance(body, list):
        raise MappingError(
            f"the body: expected an object or a list of objects, got {json_type(body)}"
        )
    events = []
    for index, item in enumerate(body):
        if not isinstance(item, dict):
            raise MappingError(f"[{index}]: expected an object, got {json_type(item)}")
        events.append(map_item(item, fields, kind=kind, source=source, where=f"[{index}]."))
    return events
