"""What history shows, read from the store: messages, the queue, account pauses, open incidents.

Every listing pages by id (keyset): a page is one index range, however long the history.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from bridge.outbox import jobs
from bridge.paging import open_incidents
from bridge.plugins.c123.marks import Pause
from bridge.sms import mask_number
from bridge.store import Connection, Row

# A message's state as people ask about it: the job's state with its hold and delivery report.
STATES: dict[str, str] = {
    "queued": "state = 'pending' AND code NOT IN ('hold', 'pause_account') AND attempts = 0",
    "retrying": "state = 'pending' AND code NOT IN ('hold', 'pause_account') AND attempts > 0",
    "held": "state = 'pending' AND code IN ('hold', 'pause_account')",
    "sending": "state = 'sending'",
    "sent": "state = 'sent' AND delivery IN ('', 'pending')",
    "delivered": "state = 'sent' AND delivery = 'delivered'",
    "failed": "(state = 'failed' OR (state = 'sent' AND delivery = 'failed'))",
    "unknown": "(state = 'unknown' OR (state = 'sent' AND delivery = 'unknown'))",
}
assert set(jobs.HOLDS) == {"hold", "pause_account"}  # the SQL above spells them out


def when(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC)


def masked(recipient: str) -> str:
    """A recipient as history shows it: a phone number masked, a chat target as it is."""
    plain = recipient.lstrip("+")
    return mask_number(plain) if plain.isdigit() else recipient


def _state(row: Row) -> str:
    """The row's name in STATES (the same rules, for one row)."""
    state, delivery = str(row["state"]), str(row["delivery"])
    if state == "pending":
        if row["code"] in jobs.HOLDS:
            return "held"
        return "retrying" if row["attempts"] > 0 else "queued"
    if state == "sent" and delivery in ("delivered", "failed", "unknown"):
        return delivery
    return state


def _cost(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        return Decimal(0)


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    event: str  # the alert's name, else the event's kind
    rule: str
    output: str
    to: str  # masked
    text: str
    state: str  # one of STATES
    queued_at: datetime
    settled_at: datetime | None  # sent, failed or given up
    attempts: int
    reason: str
    carrier_code: str
    msgid: str
    segments: int
    cost: Decimal


def _event_names(conn: Connection, ids: set[int]) -> dict[int, str]:
    """Each event's alertname label, else its kind ('' for an event retention removed)."""
    names: dict[int, str] = {}
    for event_id in ids:
        try:
            event = jobs.get_event(conn, event_id)
        except (ValueError, KeyError, zlib.error):
            continue
        if event is not None:
            names[event_id] = event.labels.get("alertname") or event.kind.value
    return names


def messages(
    conn: Connection,
    *,
    since: float | None = None,
    recipients: Sequence[str] = (),
    states: Sequence[str] = (),
    before: int | None = None,
    limit: int = 50,
) -> list[Message]:
    """Messages newest first, up to `limit`, with ids below `before`."""
    where: list[str] = []
    params: list[Any] = []
    if since is not None:
        # Ids grow with time, so the window is the id range from its first job: a range of the
        # primary key, where SQLite would otherwise scan back through every older job.
        where.append(
            "id >= coalesce((SELECT id FROM jobs WHERE created_at >= ? ORDER BY created_at"
            " LIMIT 1), -1) AND created_at >= ?"
        )
        params.extend((since, since))
    if before is not None:
        where.append("id < ?")
        params.append(before)
    if recipients:
        where.append(f"recipient IN ({','.join('?' * len(recipients))})")
        params.extend(recipients)
    if states:
        where.append("(" + " OR ".join(STATES[name] for name in states) + ")")
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        f"SELECT * FROM jobs {clause} ORDER BY id DESC LIMIT ?",  # noqa: S608 - fixed SQL and placeholders only
        (*params, limit),
    ).fetchall()
    names = _event_names(conn, {row["event_id"] for row in rows if row["event_id"] is not None})
    return [
        Message(
            id=row["id"],
            event=names.get(row["event_id"], "") if row["event_id"] is not None else "",
            rule=row["rule"],
            output=row["output"],
            to=masked(row["recipient"]),
            text=row["text"],
            state=_state(row),
            queued_at=datetime.fromtimestamp(row["created_at"], UTC),
            settled_at=when(row["updated_at"]) if row["state"] != "pending" else None,
            attempts=row["attempts"],
            reason=row["reason"],
            carrier_code=row["carrier_code"],
            msgid=row["ref"],
            segments=row["segments"],
            cost=_cost(row["cost"]),
        )
        for row in rows
    ]


@dataclass(frozen=True, slots=True)
class Waiting:
    """A message not yet settled: queued, retrying, held (and why), or being sent."""

    id: int
    rule: str
    output: str
    to: str  # masked
    state: str  # queued, retrying, held, sending
    hold: str  # the job's code when held: 'hold' or 'pause_account'
    reason: str
    attempts: int
    queued_at: datetime
    next_at: datetime | None  # when it moves next (None while sending)


def queue(conn: Connection, *, after: int | None = None, limit: int = 50) -> list[Waiting]:
    """Unsettled messages oldest first, up to `limit`, with ids above `after`."""
    rows = conn.execute(
        # The WHERE term is the jobs_unsettled index's, word for word, so SQLite uses it.
        """SELECT * FROM jobs WHERE state IN ('pending', 'sending') AND id > ?
           ORDER BY id LIMIT ?""",
        (after or 0, limit),
    ).fetchall()
    return [
        Waiting(
            id=row["id"],
            rule=row["rule"],
            output=row["output"],
            to=masked(row["recipient"]),
            state=_state(row),
            hold=row["code"] if row["code"] in jobs.HOLDS else "",
            reason=row["reason"],
            attempts=row["attempts"],
            queued_at=datetime.fromtimestamp(row["created_at"], UTC),
            next_at=when(row["next_at"]) if row["state"] == "pending" else None,
        )
        for row in rows
    ]


@dataclass(frozen=True, slots=True)
class AccountPause:
    account: str
    reason: str
    detail: str
    since: datetime
    probe_at: datetime | None  # None: when its key changes


def pauses(conn: Connection) -> list[AccountPause]:
    """The gateway accounts paused now, as the daemon marked them in the store."""
    rows = conn.execute(
        "SELECT key, value FROM settings WHERE key LIKE 'c123.%.pause' ORDER BY key"
    ).fetchall()
    found: list[AccountPause] = []
    for row in rows:
        pause = Pause.parse(row["value"])
        if pause is not None:
            account = row["key"].removeprefix("c123.").removesuffix(".pause")
            found.append(
                AccountPause(
                    account,
                    pause.reason,
                    pause.detail,
                    datetime.fromtimestamp(pause.since, UTC),
                    when(pause.probe_at),
                )
            )
    return found


@dataclass(frozen=True, slots=True)
class OpenIncident:
    id: int
    title: str
    state: str
    rule: str
    policy: str
    alerts: int
    opened_at: datetime
    acked_by: str
    acked_at: datetime | None
    pages: int
    paged: list[str]  # the people paged, by name, in the order first paged


def incidents(conn: Connection) -> list[OpenIncident]:
    """Incidents not yet resolved, oldest first, with the pages sent for each."""
    found: list[OpenIncident] = []
    for incident in open_incidents(conn):
        pages = conn.execute(
            # Per number: the name of its first page (no bare columns beside MIN(): standard SQL).
            """SELECT p.name, p.id AS first, (SELECT COUNT(*) FROM incident_pages q
                      WHERE q.incident_id = p.incident_id AND q.mobile = p.mobile) AS n
               FROM incident_pages p WHERE p.incident_id = :incident
               AND p.id = (SELECT MIN(q.id) FROM incident_pages q
                           WHERE q.incident_id = :incident AND q.mobile = p.mobile)
               ORDER BY first""",
            {"incident": incident.id},
        ).fetchall()
        found.append(
            OpenIncident(
                id=incident.id,
                title=incident.title,
                state=incident.state.value,
                rule=incident.rule,
                policy=incident.policy,
                alerts=incident.alerts,
                opened_at=datetime.fromtimestamp(incident.opened_at, UTC),
                acked_by=incident.acked_by,
                acked_at=when(incident.acked_at),
                pages=sum(row["n"] for row in pages),
                paged=[masked(row["name"]) for row in pages],
            )
        )
    return found
