"""Incidents: opened per alert group, acknowledged, resolved; and the pages sent for them.

Functions here take a sqlite3 connection and run inside a Store.write() call. Each transition
returns what happened, for the caller to tell people after the commit. Escalation (who is paged
when) lives in `bridge.paging.escalation`; it drives the `position` and `base` kept here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum

from bridge.config.oncall import PolicyConfig
from bridge.events import Conversation
from bridge.intake import conversations
from bridge.store import Connection, Row, timers

# Timer kinds, keyed by incident id (steps, acknowledgement timeouts) or page id (reports).
STEP_TIMER = "incident.step"
ACK_TIMER = "incident.ack"
REPORT_TIMER = "incident.report"
# A page's reply code is held while its incident is open (its conversation lives until then),
# and for this long after it resolves, so a late `1a` never lands on another incident.
CODE_QUARANTINE = 86400.0
OPEN_UNTIL = 253402300799.0  # 9999-12-31: a conversation that lasts until its incident resolves


class State(StrEnum):
    TRIGGERED = "triggered"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Change(StrEnum):
    """What a transition did."""

    OPENED = "opened"
    ALERT_ADDED = "alert_added"  # another alert of an open incident: nothing restarts
    ACKNOWLEDGED = "acknowledged"
    ACK_EXTENDED = "ack_extended"  # acknowledged again: the acknowledgement lasts longer
    RETRIGGERED = "retriggered"  # the acknowledgement ran out: paging starts over
    ESCALATED = "escalated"
    RESOLVED = "resolved"
    UNCHANGED = "unchanged"  # e.g. acknowledging a resolved incident


@dataclass(frozen=True, slots=True)
class Incident:
    id: int  # the global incident number people quote (`sms ack 3`)
    rule: str
    group_key: str
    policy: str
    title: str
    state: State
    event_id: int | None
    conversation: Conversation | None  # the chat thread it came from, if any
    alerts: int
    ack_timeout: float | None
    report_timeout: float
    final_wait: float
    position: int  # the next timeline entry to page
    base: float  # timeline entry i is due at base + its offset
    acked_by: str
    acked_until: float | None
    resolved_by: str
    opened_at: float
    acked_at: float | None
    resolved_at: float | None


@dataclass(frozen=True, slots=True)
class Paged:
    """Someone paged for an incident: told when it is acknowledged or closed."""

    name: str
    mobile: str
    code: int


@dataclass(frozen=True, slots=True)
class Transition:
    incident: Incident  # as it is now
    change: Change
    previous: State | None  # None when it was just opened
    by: str = ""
    paged: tuple[Paged, ...] = ()  # everyone paged for it so far, each number once

    @property
    def changed(self) -> bool:
        return self.change is not Change.UNCHANGED


def _incident(row: Row) -> Incident:
    raw = row["conversation"]
    return Incident(
        id=row["id"],
        rule=row["rule"],
        group_key=row["group_key"],
        policy=row["policy"],
        title=row["title"],
        state=State(row["state"]),
        event_id=row["event_id"],
        conversation=Conversation.from_json(json.loads(raw)) if raw else None,
        alerts=row["alerts"],
        ack_timeout=row["ack_timeout"],
        report_timeout=row["report_timeout"],
        final_wait=row["final_wait"],
        position=row["position"],
        base=row["base"],
        acked_by=row["acked_by"],
        acked_until=row["acked_until"],
        resolved_by=row["resolved_by"],
        opened_at=row["opened_at"],
        acked_at=row["acked_at"],
        resolved_at=row["resolved_at"],
    )


def get(conn: Connection, incident_id: int) -> Incident | None:
    row = conn.execute("SELECT * FROM incidents WHERE id = ?", (incident_id,)).fetchone()
    return _incident(row) if row else None


def find_open(conn: Connection, rule: str, group_key: str) -> Incident | None:
    """The incident not yet resolved for this rule and alert group."""
    row = conn.execute(
        "SELECT * FROM incidents WHERE rule = ? AND group_key = ? AND state != ?",
        (rule, group_key, State.RESOLVED),
    ).fetchone()
    return _incident(row) if row else None


def open_incidents(conn: Connection) -> list[Incident]:
    rows = conn.execute(
        "SELECT * FROM incidents WHERE state != ? ORDER BY id", (State.RESOLVED,)
    ).fetchall()
    return [_incident(row) for row in rows]


def open_counts(conn: Connection) -> dict[State, int]:
    """How many incidents are in each state short of resolved (0 where none)."""
    # The literal lets SQLite read the partial index of open incidents, not the whole table.
    rows = conn.execute(
        "SELECT state, COUNT(*) AS n FROM incidents WHERE state != 'resolved' GROUP BY state"
    ).fetchall()
    counts = {State.TRIGGERED: 0, State.ACKNOWLEDGED: 0}
    counts.update({State(row["state"]): int(row["n"]) for row in rows})
    return counts


def _require(conn: Connection, incident_id: int) -> Incident:
    found = get(conn, incident_id)
    if found is None:
        raise LookupError(f"no incident #{incident_id}")
    return found


def paged(conn: Connection, incident_id: int) -> tuple[Paged, ...]:
    """Everyone paged for the incident, each number once, in the order first paged."""
    rows = conn.execute(
        # Each number's first page (standard SQL: no bare columns beside MIN()).
        """SELECT name, mobile, code, id AS first FROM incident_pages p
           WHERE incident_id = :incident AND id = (SELECT MIN(q.id) FROM incident_pages q
                 WHERE q.incident_id = :incident AND q.mobile = p.mobile)
           ORDER BY first""",
        {"incident": incident_id},
    ).fetchall()
    return tuple(Paged(row["name"], row["mobile"], row["code"]) for row in rows)


def final_wait(policy: PolicyConfig) -> float:
    """How long the last page of a pass is given before paging is over: as long as the policy
    waits anywhere, or its report timeout when it never waits."""
    longest = max(step.after for step in policy.steps).total_seconds()
    return longest or policy.report_timeout.total_seconds()


def open_incident(
    conn: Connection,
    rule: str,
    group_key: str,
    policy_name: str,
    policy: PolicyConfig,
    title: str,
    event_id: int | None,
    conversation: Conversation | None,
    now: float,
) -> Transition:
    """Open the incident of this alert group, or count one more alert on the open one.

    OPENED means the caller starts its escalation (`escalation.start_escalation`); ALERT_ADDED
    means it is already under way and nothing restarts.
    """
    existing = find_open(conn, rule, group_key)
    if existing is not None:
        conn.execute(
            "UPDATE incidents SET alerts = alerts + 1, updated_at = ? WHERE id = ?",
            (now, existing.id),
        )
        return Transition(
            _require(conn, existing.id),
            Change.ALERT_ADDED,
            existing.state,
            paged=paged(conn, existing.id),
        )
    ack = policy.ack_timeout.total_seconds() if policy.ack_timeout else None
    cursor = conn.execute(
        """INSERT INTO incidents (rule, group_key, policy, title, state, event_id, conversation,
               ack_timeout, report_timeout, final_wait, base, opened_at, updated_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id""",
        (
            rule,
            group_key,
            policy_name,
            title,
            State.TRIGGERED,
            event_id,
            json.dumps(conversation.to_json()) if conversation else None,
            ack,
            policy.report_timeout.total_seconds(),
            final_wait(policy),
            now,
            now,
            now,
        ),
    )
    return Transition(_require(conn, int(cursor.fetchone()[0])), Change.OPENED, None)


def stop_paging(conn: Connection, incident_id: int) -> None:
    """Drop the incident's step timer and the report timeouts of its pages."""
    timers.cancel(conn, STEP_TIMER, str(incident_id))
    pending = conn.execute(
        "SELECT id FROM incident_pages WHERE incident_id = ? AND status = 'pending'",
        (incident_id,),
    ).fetchall()
    for row in pending:
        timers.cancel(conn, REPORT_TIMER, str(row["id"]))


def acknowledge(
    conn: Connection, incident_id: int, who: str, now: float, until: float | None = None
) -> Transition:
    """Stop paging: someone has it. The acknowledgement lasts until `until`, or the policy's
    ack_timeout, or (with neither) until the incident resolves; when it runs out, paging starts
    over. Acknowledging again only makes it last longer."""
    incident = _require(conn, incident_id)
    if incident.state is State.RESOLVED:
        return Transition(incident, Change.UNCHANGED, incident.state, who)
    if until is None and incident.ack_timeout is not None:
        until = now + incident.ack_timeout
    if incident.state is State.ACKNOWLEDGED:
        current = incident.acked_until
        if current is None or (until is not None and until <= current):
            return Transition(incident, Change.UNCHANGED, incident.state, who)
        change = Change.ACK_EXTENDED
        conn.execute(
            "UPDATE incidents SET acked_until = ?, updated_at = ? WHERE id = ?",
            (until, now, incident_id),
        )
    else:
        change = Change.ACKNOWLEDGED
        stop_paging(conn, incident_id)
        conn.execute(
            """UPDATE incidents SET state = ?, acked_by = ?, acked_at = ?, acked_until = ?,
                   updated_at = ? WHERE id = ?""",
            (State.ACKNOWLEDGED, who, now, until, now, incident_id),
        )
    if until is None:
        timers.cancel(conn, ACK_TIMER, str(incident_id))
    else:
        timers.schedule(conn, ACK_TIMER, str(incident_id), until, now, replace=True)
    return Transition(
        _require(conn, incident_id), change, incident.state, who, paged(conn, incident_id)
    )


def resolve(conn: Connection, incident_id: int, now: float, by: str = "") -> Transition:
    """Resolved (the alert resolved, or `by` closed it): paging stops for good, and its reply
    codes are freed after CODE_QUARANTINE."""
    incident = _require(conn, incident_id)
    if incident.state is State.RESOLVED:
        return Transition(incident, Change.UNCHANGED, incident.state, by)
    stop_paging(conn, incident_id)
    timers.cancel(conn, ACK_TIMER, str(incident_id))
    conn.execute(
        """UPDATE incidents SET state = ?, resolved_by = ?, resolved_at = ?, updated_at = ?
           WHERE id = ?""",
        (State.RESOLVED, by, now, now, incident_id),
    )
    conn.execute(
        """UPDATE conversations SET expires_at = :until
           WHERE expires_at > :until
           AND id IN (SELECT conversation_id FROM incident_pages WHERE incident_id = :incident)""",
        {"until": now + CODE_QUARANTINE, "incident": incident_id},
    )
    return Transition(
        _require(conn, incident_id), Change.RESOLVED, incident.state, by, paged(conn, incident_id)
    )


def resolve_group(conn: Connection, rule: str, group_key: str, now: float) -> Transition | None:
    """The alert group resolved: its open incident (if any) is resolved."""
    incident = find_open(conn, rule, group_key)
    return None if incident is None else resolve(conn, incident.id, now)


def code_for(conn: Connection, incident_id: int, mobile: str, now: float) -> int:
    """The reply code of the incident's pages to `mobile`: the one it already has there, or the
    number's next free code (one counter per number, shared with chat reply codes)."""
    row = conn.execute(
        """SELECT p.code FROM incident_pages p JOIN conversations c ON c.id = p.conversation_id
           WHERE p.incident_id = ? AND p.mobile = ? AND c.expires_at > ?
           ORDER BY p.id DESC LIMIT 1""",
        (incident_id, mobile, now),
    ).fetchone()
    if row is not None:
        return int(row["code"])
    return conversations.next_code(conn, mobile, now)[0]
