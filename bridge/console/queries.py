"""What the console reads beyond the history views: a message's timeline, live conversations,
the gateway's balance and budget, and the simulated phones."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from bridge.commands.history import views
from bridge.commands.status import Status, read_status
from bridge.events import Conversation
from bridge.intake import StormSettings, day_start
from bridge.outbox import jobs
from bridge.plugins.c123.errors import C123Error
from bridge.plugins.c123.wire import parse_balance, parse_replies, parse_reports
from bridge.rules import Contacts
from bridge.store import Connection

if TYPE_CHECKING:  # the simulator is imported only when it stands in for a gateway
    from bridge.plugins.c123.simulator import GatewayState


FAR = datetime(9000, 1, 1, tzinfo=UTC).timestamp()  # past it: "until closed", not a date


def _at(timestamp: float | None) -> datetime | None:
    if timestamp is None or timestamp >= FAR:
        return None
    return datetime.fromtimestamp(timestamp, UTC)


@dataclass(frozen=True, slots=True)
class Step:
    at: datetime | None
    what: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Timeline:
    message: views.Message
    labels: Mapping[str, str]
    steps: list[Step]
    incident: int | None  # the incident this message paged for
    reply_code: int | None  # the code replies to it carry


def timeline(conn: Connection, job_id: int) -> Timeline | None:
    """One message and how far it got: queued, held or retried, sent, delivered or failed."""
    found = views.messages(conn, before=job_id + 1, limit=1)
    if not found or found[0].id != job_id:
        return None
    message = found[0]
    row = conn.execute("SELECT event_id, delivery FROM jobs WHERE id = ?", (job_id,)).fetchone()
    event = jobs.get_event(conn, row["event_id"]) if row["event_id"] is not None else None
    steps = [Step(message.queued_at, "queued", f"rule {message.rule}" if message.rule else "")]
    if message.state in ("retrying", "held"):
        steps.append(Step(None, message.state, message.reason))
    elif message.attempts > 1:
        steps.append(Step(None, "retried", f"{message.attempts} attempts"))
    if message.state == "sending":
        steps.append(Step(None, "sending", "handed to the gateway"))
    elif message.msgid or message.state in ("sent", "delivered") or message.carrier_code:
        detail = f"msgid {message.msgid}, {message.segments} segment(s), cost {message.cost}"
        steps.append(Step(message.settled_at, "sent", detail))
        if row["delivery"] in ("delivered", "failed", "unknown"):
            code = message.carrier_code or "no carrier code"
            steps.append(Step(None, f"delivery report: {row['delivery']}", code))
        else:
            steps.append(Step(None, "awaiting delivery report"))
    elif message.state in ("failed", "unknown"):
        steps.append(Step(message.settled_at, message.state, message.reason))
    page = conn.execute(
        "SELECT incident_id FROM incident_pages WHERE job_id = ? LIMIT 1", (job_id,)
    ).fetchone()
    code = conn.execute(
        "SELECT code FROM conversations WHERE job_id = ? LIMIT 1", (job_id,)
    ).fetchone()
    return Timeline(
        message=message,
        labels=dict(event.labels) if event is not None else {},
        steps=steps,
        incident=page["incident_id"] if page else None,
        reply_code=code["code"] if code else None,
    )


@dataclass(frozen=True, slots=True)
class LiveConversation:
    id: int
    to: str  # masked
    code: int
    job_id: int
    origin: Conversation | None  # the chat thread replies go back to
    opened_at: datetime
    expires_at: datetime | None  # None: open until its incident closes


def conversations(conn: Connection, now: float, limit: int = 100) -> list[LiveConversation]:
    """Conversations a reply can still join (open reply codes), newest first."""
    rows = conn.execute(
        """SELECT * FROM conversations WHERE expires_at > ? ORDER BY id DESC LIMIT ?""",
        (now, limit),
    ).fetchall()
    return [
        LiveConversation(
            id=row["id"],
            to=views.masked(row["mobile"]),
            code=row["code"],
            job_id=row["job_id"],
            origin=Conversation.from_json(json.loads(row["conversation"]))
            if row["conversation"]
            else None,
            opened_at=datetime.fromtimestamp(row["created_at"], UTC),
            expires_at=_at(row["expires_at"]),
        )
        for row in rows
    ]


@dataclass(frozen=True, slots=True)
class Gateway:
    balances: list[tuple[datetime, Decimal]]  # oldest first
    segments_today: int
    budget: int | None
    pauses: list[views.AccountPause]
    polls: dict[str, datetime] = field(default_factory=dict)  # last successful, by action
    cluster: Status | None = None  # the instances on the store and who holds each lease


def gateway(
    conn: Connection, output: str, storm: StormSettings, now: float, samples: int = 48
) -> Gateway:
    """Balance over the last `samples` reads, segments used today against the budget, pauses."""
    rows = conn.execute(
        """SELECT body, received_at FROM raw_polls WHERE action = 'getBalance'
           ORDER BY id DESC LIMIT ?""",
        (samples,),
    ).fetchall()
    balances: list[tuple[datetime, Decimal]] = []
    for row in reversed(rows):
        try:
            remain = parse_balance(bytes(row["body"])).remain
        except (C123Error, ValueError):
            continue  # an error answer stored as it came: no balance in it
        balances.append((datetime.fromtimestamp(row["received_at"], UTC), remain))
    used = jobs.segments_since(conn, [output], day_start(now, storm.budget_zone))
    return Gateway(
        balances,
        used,
        storm.daily_segment_budget,
        views.pauses(conn),
        last_polls(conn, output),
        read_status(conn),
    )


# How each polled action's stored answer is read: one that parses was a successful poll.
_POLLS: dict[str, Callable[[bytes], object]] = {
    "getReply": parse_replies,
    "getSendState": parse_reports,
    "getBalance": parse_balance,
}


def last_polls(conn: Connection, output: str, look: int = 20) -> dict[str, datetime]:
    """When each gateway poll last succeeded, by any instance: the newest stored answer of
    each action that parses (whoever held the account's lease stored it; an answer that did
    not parse is kept too, for people to look at, but was no success)."""
    found: dict[str, datetime] = {}
    for action, parse in _POLLS.items():
        rows = conn.execute(
            """SELECT body, received_at FROM raw_polls WHERE account = ? AND action = ?
               ORDER BY id DESC LIMIT ?""",
            (output, action, look),
        ).fetchall()
        for row in rows:
            try:
                parse(bytes(row["body"]))
            except (C123Error, ValueError):
                continue
            found[action] = datetime.fromtimestamp(row["received_at"], UTC)
            break
    return found


@dataclass(frozen=True, slots=True)
class Phone:
    key: str  # stands for the number in forms: the page never carries the number itself
    to: str  # masked
    name: str
    inbox: list[tuple[datetime, str]]  # newest first


def phone_key(mobile: str) -> str:
    return hashlib.sha256(f"phone|{mobile}".encode()).hexdigest()[:16]


def phones(state: GatewayState, contacts: Contacts, limit: int = 20) -> list[Phone]:
    """Each simulated phone that received an SMS (or is a contact), with its newest messages."""
    names = {contact.number: contact.name or name for name, contact in contacts.items()}
    inboxes: dict[str, list[tuple[datetime, str]]] = {number: [] for number in names}
    for message in state.messages:
        inboxes.setdefault(message.mobile, []).append((message.submitted_at, message.content))
    return [
        Phone(
            phone_key(mobile),
            views.masked(mobile),
            names.get(mobile, ""),
            sorted(inbox, key=lambda item: item[0], reverse=True)[:limit],
        )
        for mobile, inbox in sorted(inboxes.items(), key=lambda item: names.get(item[0], item[0]))
    ]


def phone_number(state: GatewayState, contacts: Contacts, key: str) -> str | None:
    """The number a phone key stands for."""
    known = {contact.number for contact in contacts.values()}
    known.update(message.mobile for message in state.messages)
    return next((mobile for mobile in known if phone_key(mobile) == key), None)


@dataclass(frozen=True, slots=True)
class PageSent:
    name: str
    to: str  # masked
    code: int
    step: int
    pass_index: int
    status: str
    job_id: int | None
    paged_at: datetime


def pages(conn: Connection, incident_id: int) -> list[PageSent]:
    """Every page sent for an incident, in order, with its reply code and delivery status."""
    rows = conn.execute(
        "SELECT * FROM incident_pages WHERE incident_id = ? ORDER BY position, id", (incident_id,)
    ).fetchall()
    return [
        PageSent(
            row["name"],
            views.masked(row["mobile"]),
            row["code"],
            row["step"] + 1,
            row["pass_index"] + 1,
            row["status"],
            row["job_id"],
            datetime.fromtimestamp(row["paged_at"], UTC),
        )
        for row in rows
    ]
