"""The gateway's answers and their exact XML form, attribute values escaped to round-trip."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from xml.sax.saxutils import escape

from bridge.plugins.c123.models import Action
from bridge.plugins.c123.simulator.config import MalformedVariant

# Attribute-value normalisation turns raw tab, newline and carriage return into spaces,
# so they travel as character references; quotes because values are wrapped in "".
_ATTRIBUTE_ENTITIES = {'"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)
_MILLISECOND = timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class Report:
    """A delivery report waiting for getSendState; it is returned once, from due_at on."""

    msgid: str
    mobile: str
    code: str
    result: int
    due_at: datetime


@dataclass(frozen=True, slots=True)
class Reply:
    """An inbound SMS waiting for getReply; msgid is the last message sent to that mobile."""

    mobile: str
    content: str
    time: datetime
    msgid: str | None


@dataclass(frozen=True, slots=True)
class SentRow:
    """One Item of a send answer."""

    cid: str
    sid: str
    msgid: str
    total: int
    price: Decimal
    remain: Decimal


@dataclass(frozen=True, slots=True)
class BalanceRow:
    """The Item of a getBalance answer."""

    cid: str
    sid: str
    remain: Decimal


@dataclass(frozen=True, slots=True)
class KeyRow:
    """The Item of an updateKey answer."""

    cid: str
    sid: str
    authkey: str = field(repr=False)


Row = SentRow | Report | Reply | BalanceRow | KeyRow


@dataclass(frozen=True, slots=True)
class Answer:
    """What the gateway answers to one call: a result code and, on success, its Items."""

    action: Action
    result: int
    rows: tuple[Row, ...] = ()


def quote_attribute(value: str) -> str:
    """A double-quoted XML attribute value that parses back to exactly `value`."""
    return f'"{escape(value, _ATTRIBUTE_ENTITIES)}"'


def price_text(amount: Decimal) -> str:
    """A per-segment price the way the provider writes it: 0.10."""
    return f"{amount:.2f}"


def money_text(amount: Decimal) -> str:
    """A balance the way the provider writes it: 170.040."""
    return f"{amount:.3f}"


def render(answer: Answer, *, reply_time_millis: bool = False) -> str:
    """The XML body of an answer: a bare failure, or a success with one Item per row."""
    if answer.result != 1:
        return forced_code(answer.action.value, answer.result)
    head = f'<xml name={quote_attribute(answer.action.value)} result="1"'
    items = "".join(
        _item(position, row, reply_time_millis=reply_time_millis)
        for position, row in enumerate(answer.rows, start=1)
    )
    return f"{head}>{items}</xml>"


def forced_code(action: str, code: int) -> str:
    """The body of a forced result code: the gateway's failure form, whatever the code."""
    return f"<xml name={quote_attribute(action)} result={quote_attribute(str(code))}/>"


def malformed(action: str, variant: MalformedVariant) -> tuple[str, str]:
    """A body that is not the protocol's XML, and its content type."""
    if variant is MalformedVariant.HTML:
        page = "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1>"
        return page + "<hr><center>nginx</center></body></html>", "text/html"
    if variant is MalformedVariant.TRUNCATED:
        return f'<xml name={quote_attribute(action)} result="1"><Item cid="', "text/xml"
    if variant is MalformedVariant.WRONG_ROOT:
        return f'<response name={quote_attribute(action)} result="1"/>', "text/xml"
    return "", "text/xml"


def _item(position: int, row: Row, *, reply_time_millis: bool) -> str:
    attributes: dict[str, str]
    if isinstance(row, SentRow):
        attributes = {
            "cid": row.cid,
            "sid": row.sid,
            "msgid": row.msgid,
            "total": str(row.total),
            "price": price_text(row.price),
            "remain": money_text(row.remain),
        }
    elif isinstance(row, Report):
        attributes = {
            "id": str(position),
            "msgid": row.msgid,
            "mobile": row.mobile,
            "result": str(row.result),
            "return": row.code,
        }
    elif isinstance(row, Reply):
        stamp = (row.time - _EPOCH) // (_MILLISECOND if reply_time_millis else _SECOND)
        attributes = {"id": str(position), "time": str(stamp), "mobile": row.mobile}
        attributes["content"] = row.content
        if row.msgid is not None:
            attributes["msgid"] = row.msgid
    elif isinstance(row, BalanceRow):
        attributes = {"cid": row.cid, "sid": row.sid, "remain": money_text(row.remain)}
    else:
        attributes = {"cid": row.cid, "sid": row.sid, "authkey": row.authkey}
    pairs = " ".join(f"{name}={quote_attribute(value)}" for name, value in attributes.items())
    return f"<Item {pairs}/>"
