"""Reply commands acted on: an SMS reply acknowledges, closes or escalates incidents paged to it.

Functions here take a sqlite3 connection and run inside a Store.write() call (the processor's,
for the reply's inbox row), so a reply acts exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

import bridge.paging.escalation as escalation
import bridge.paging.incidents as incidents
from bridge.paging.escalation import Cause, Escalation
from bridge.paging.incidents import Incident, State, Transition
from bridge.paging.replies import DEFAULT_ACK_MAX, Action, Command, parse_reply
from bridge.store import Connection, ledger

DAY = 86400.0


class Result(StrEnum):
    NOT_A_COMMAND = "not_a_command"  # an ordinary reply: forward it as before
    DONE = "done"
    UNKNOWN_CODE = "unknown_code"  # no live page to this number carries the code
    NOTHING_OPEN = "nothing_open"  # no open incident was paged to this number


@dataclass(frozen=True, slots=True)
class Silence:
    """`ack 2h`: silence the incident's alert this long (after the commit, in Alertmanager)."""

    incident: Incident
    duration: timedelta


@dataclass(frozen=True, slots=True)
class Outcome:
    result: Result
    command: Command | None = None
    transitions: tuple[Transition, ...] = ()  # acknowledgements and closes: tell the others
    escalations: tuple[Escalation, ...] = ()  # `escalate`: pages to queue
    silences: tuple[Silence, ...] = ()

    @property
    def answer(self) -> str:
        """A short SMS back to the replier, saying what the command did."""
        if self.result is Result.UNKNOWN_CODE and self.command is not None:
            return f"No open page has code {self.command.code}"
        if self.result is Result.NOTHING_OPEN:
            return "No open incident was paged to you"
        done: list[str] = []
        for transition in self.transitions:
            incident = transition.incident
            if transition.changed:
                done.append(f"{transition.change.value} #{incident.id} {incident.title}")
            else:
                done.append(f"#{incident.id} is already {incident.state.value}")
        for step in self.escalations:
            if step.incident is None:
                continue
            who = ", ".join(page.name for page in step.pages) or "nobody left to page"
            done.append(f"escalated #{step.incident.id}: {who}")
        return "; ".join(done)


def _target_by_code(conn: Connection, mobile: str, code: int, now: float) -> list[tuple[int, str]]:
    row = conn.execute(
        """SELECT p.incident_id, p.name FROM incident_pages p
           JOIN conversations c ON c.id = p.conversation_id
           WHERE p.mobile = ? AND p.code = ? AND c.expires_at > ?
           ORDER BY p.id DESC LIMIT 1""",
        (mobile, code, now),
    ).fetchone()
    return [] if row is None else [(row["incident_id"], row["name"])]


def _open_targets(conn: Connection, mobile: str, every: bool) -> list[tuple[int, str]]:
    """The open incidents paged to `mobile`, newest page first (only the newest unless every)."""
    rows = conn.execute(
        # Each incident's newest page to the number (standard SQL: no bare columns beside MAX()).
        """SELECT p.incident_id, p.name, p.id AS last FROM incident_pages p
           JOIN incidents i ON i.id = p.incident_id
           WHERE p.mobile = :mobile AND i.state != :resolved
           AND p.id = (SELECT MAX(q.id) FROM incident_pages q
                       WHERE q.incident_id = p.incident_id AND q.mobile = :mobile)
           ORDER BY last DESC""",
        {"mobile": mobile, "resolved": State.RESOLVED},
    ).fetchall()
    found = [(row["incident_id"], row["name"]) for row in rows]
    return found if every else found[:1]


def apply_reply(
    conn: Connection,
    mobile: str,
    text: str,
    now: float,
    *,
    ack_max: timedelta = DEFAULT_ACK_MAX,
) -> Outcome:
    """Act on a reply from `mobile` if the whole of it is a command (`1a`, `ack`, `ack all`,
    `确认`, `ack 2h`, ...): a code picks the incident whose page carried it; a bare command
    picks the newest open incident paged to the number; `ack all` every open one."""
    command = parse_reply(text, ack_max=ack_max)
    if command is None:
        return Outcome(Result.NOT_A_COMMAND)
    if command.code is not None:
        targets = _target_by_code(conn, mobile, command.code, now)
        if not targets:
            return Outcome(Result.UNKNOWN_CODE, command)
    else:
        targets = _open_targets(conn, mobile, command.all)
        if not targets:
            return Outcome(Result.NOTHING_OPEN, command)
    transitions: list[Transition] = []
    escalations: list[Escalation] = []
    silences: list[Silence] = []
    for incident_id, who in targets:
        if command.action is Action.ACK:
            until = now + command.silence.total_seconds() if command.silence else None
            transition = incidents.acknowledge(conn, incident_id, who, now, until)
            transitions.append(transition)
            if command.silence and transition.incident.state is not State.RESOLVED:
                silences.append(Silence(transition.incident, command.silence))
        elif command.action is Action.CLOSE:
            transitions.append(incidents.resolve(conn, incident_id, now, by=who))
        else:
            escalations.append(escalation.escalate(conn, incident_id, now, Cause.ASKED, by=who))
    return Outcome(Result.DONE, command, tuple(transitions), tuple(escalations), tuple(silences))


def paged_lately(conn: Connection, mobile: str, now: float) -> bool:
    """Whether `mobile` was paged in the last day."""
    row = conn.execute(
        "SELECT 1 FROM incident_pages WHERE mobile = ? AND paged_at > ? LIMIT 1",
        (mobile, now - DAY),
    ).fetchone()
    return row is not None


def may_help(conn: Connection, mobile: str, now: float, per_day: int) -> bool:
    """Whether a reply that is no command may get a help answer: only numbers paged in the last
    day, at most `per_day` answers a day each (no reply loops, no surprise bills). Counts the
    answer when it says yes."""
    if not paged_lately(conn, mobile, now):
        return False
    # One de-duplication key per allowed answer, each held for a day.
    return any(not ledger.seen_within(conn, f"help|{mobile}|{n}", now, DAY) for n in range(per_day))
