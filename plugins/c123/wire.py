"""Reading the gateway's XML answers into typed results, or into the typed error they mean."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TypeVar
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from bridge.plugins.c123.errors import (
    REFUSALS,
    MalformedResponseError,
    UnknownResultCodeError,
    refusal_for,
)
from bridge.plugins.c123.models import (
    Action,
    Balance,
    DeliveryReport,
    InboundReply,
    KeyRotation,
    SendResult,
    SentItem,
)

T = TypeVar("T")

# Reply times above this are milliseconds: 10^11 seconds is the year 5138.
_MILLIS_THRESHOLD = 10**11
# Refusals are a few dozen bytes; a big answer is read whole only by whoever uses its records.
_PEEK_ABOVE = 4096
_HEAD = re.compile(rb"\A\s*(?:<\?xml[^>]{0,200}\?>\s*)?<xml(\s[^>]{0,400})>")
_ATTRIBUTE = re.compile(rb"""([A-Za-z_]+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")


def decode_body(body: bytes) -> str:
    """Text of an answer: UTF-8 as documented, GB18030 from gateways that ignore the document."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return body.decode("gb18030", errors="replace")


def parse_items(action: Action, body: bytes) -> list[Element]:
    """The `Item` elements of a successful answer; raises the typed error of any other answer."""
    text = decode_body(body).strip()
    if not text:
        raise MalformedResponseError("empty body", action=action.value)
    try:
        root = fromstring(text, forbid_dtd=True)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise MalformedResponseError(
            f"not XML ({type(exc).__name__})", action=action.value
        ) from None
    if root.tag != "xml":
        raise MalformedResponseError(f"root element is <{root.tag[:40]}>", action=action.value)
    name = root.get("name", "").strip()
    if name and name != action.value:
        raise MalformedResponseError(f"answer is for action {name[:40]!r}", action=action.value)
    raw_code = root.get("result")
    if raw_code is None:
        raise MalformedResponseError("no result attribute", action=action.value)
    try:
        code = int(raw_code.strip())
    except ValueError:
        raise UnknownResultCodeError(raw_code[:40], action=action.value) from None
    # The provider's SDK treats any positive result as success.
    if code > 0:
        return [child for child in root if child.tag.lower() == "item"]
    if code in REFUSALS:
        raise refusal_for(code, action=action.value)
    raise UnknownResultCodeError(raw_code[:40], action=action.value)


def check_answer(action: Action, body: bytes) -> bytes:
    """The body, once it is known to be a success for `action`; else the typed error it means.

    A large answer is judged by its root element alone, so a 20,000-record answer is not
    parsed twice; anything that does not look like a plain success is parsed in full.
    """
    if len(body) > _PEEK_ABOVE:
        head = _HEAD.match(body[:1024])
        if head is not None:
            found = {
                m.group(1): m.group(2) or m.group(3) or b""
                for m in _ATTRIBUTE.finditer(head.group(1))
            }
            name, code = found.get(b"name", b"").strip(), found.get(b"result", b"").strip()
            if name in (b"", action.value.encode()) and code.isdigit() and int(code) > 0:
                return body
    parse_items(action, body)
    return body


def _attr(item: Element, name: str, action: Action, *aliases: str) -> str:
    for key in (name, *aliases):
        value = item.get(key)
        if value is not None:
            return value
    raise MalformedResponseError(f"Item has no {name!r} attribute", action=action.value)


def _convert(raw: str, convert: Callable[[str], T], what: str, action: Action) -> T:
    try:
        return convert(raw.strip())
    except (ValueError, InvalidOperation):
        raise MalformedResponseError(
            f"{what} is not a number: {raw[:40]!r}", action=action.value
        ) from None


def _decimal(item: Element, name: str, action: Action, *aliases: str) -> Decimal:
    value = _convert(_attr(item, name, action, *aliases), Decimal, name, action)
    if not value.is_finite():
        raise MalformedResponseError(f"{name} is not a finite number", action=action.value)
    return value


def parse_send(action: Action, body: bytes, numbers: tuple[str, ...]) -> SendResult:
    """A send answer: one Item for sendOnce, one per number for sendBatch and sendParam."""
    items = parse_items(action, body)
    expected = 1 if action is Action.SEND_ONCE else len(numbers)
    if len(items) != expected:
        raise MalformedResponseError(
            f"expected {expected} Item(s), got {len(items)}", action=action.value
        )
    sent = tuple(
        SentItem(
            msgid=_attr(item, "msgid", action).strip(),
            segments=_convert(_attr(item, "total", action), int, "total", action),
            # Older answers name the unit price `fee`.
            price=_decimal(item, "price", action, "fee"),
            remain=_decimal(item, "remain", action),
            enterprise_id=item.get("cid", ""),
            employee_id=item.get("sid", ""),
        )
        for item in items
    )
    if any(not item.msgid for item in sent):
        raise MalformedResponseError("Item has an empty msgid", action=action.value)
    return SendResult(action=action, numbers=numbers, items=sent)


def parse_reports(body: bytes) -> list[DeliveryReport]:
    """Delivery reports from a getSendState answer."""
    action = Action.GET_SEND_STATE
    return [
        DeliveryReport(
            msgid=_attr(item, "msgid", action).strip(),
            mobile=_attr(item, "mobile", action).strip(),
            result=item.get("result", ""),
            carrier_code=item.get("return", "").strip(),
        )
        for item in parse_items(action, body)
    ]


def reply_time(raw: str) -> datetime | None:
    """A reply's time: seconds since the epoch, or milliseconds when implausibly large."""
    try:
        value = int(raw.strip())
    except ValueError:
        return None
    seconds = value / 1000 if value > _MILLIS_THRESHOLD else value
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def parse_replies(body: bytes) -> list[InboundReply]:
    """Inbound replies from a getReply answer; an unreadable time never loses the reply."""
    action = Action.GET_REPLY
    replies = []
    for item in parse_items(action, body):
        raw_time = item.get("time", "")
        replies.append(
            InboundReply(
                mobile=_attr(item, "mobile", action).strip(),
                content=_attr(item, "content", action),
                time=reply_time(raw_time),
                raw_time=raw_time,
                msgid=item.get("msgid", "").strip(),
            )
        )
    return replies


def _single(action: Action, body: bytes) -> Element:
    items = parse_items(action, body)
    if len(items) != 1:
        raise MalformedResponseError(f"expected 1 Item, got {len(items)}", action=action.value)
    return items[0]


def parse_balance(body: bytes) -> Balance:
    """The balance from a getBalance answer."""
    item = _single(Action.GET_BALANCE, body)
    return Balance(
        remain=_decimal(item, "remain", Action.GET_BALANCE),
        enterprise_id=item.get("cid", ""),
        employee_id=item.get("sid", ""),
    )


def parse_key_rotation(body: bytes) -> KeyRotation:
    """The new key from an updateKey answer."""
    item = _single(Action.UPDATE_KEY, body)
    key = _attr(item, "authkey", Action.UPDATE_KEY).strip()
    if not key:
        raise MalformedResponseError("empty authkey", action=Action.UPDATE_KEY.value)
    return KeyRotation(
        enterprise_id=item.get("cid", ""), employee_id=item.get("sid", ""), authkey=key
    )
