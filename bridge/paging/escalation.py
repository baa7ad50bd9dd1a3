"""Escalation: an incident's timeline paged entry by entry on durable timers, until someone has it.

Functions here take a sqlite3 connection and run inside a Store.write() call, with the firing of
the timer that asked for them: a page is decided (and its SMS queued by the caller) exactly once.
The timeline is stored with the incident when paging starts, so a restart or a config reload
never changes who an incident already under way pages next.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import bridge.paging.incidents as incidents
from bridge.intake import conversations
from bridge.paging.incidents import (
    ACK_TIMER,
    OPEN_UNTIL,
    REPORT_TIMER,
    STEP_TIMER,
    Change,
    Incident,
    State,
    Transition,
)
from bridge.paging.policy import NobodyOnCall, TimelineEntry
from bridge.store import Connection, Row, timers

TIMER_KINDS = frozenset({STEP_TIMER, ACK_TIMER, REPORT_TIMER})  # the timers `on_timer` fires
FAILED = frozenset({"failed", "timeout"})  # page statuses that count as not delivered


class Cause(StrEnum):
    """Why paging moved on before its time (for the escalations metric)."""

    ASKED = "asked"  # `1e`, `escalate`, a chat command
    FAILED_DELIVERY = "failed_delivery"  # every page of the step failed to deliver
    REPORT_TIMEOUT = "report_timeout"  # no delivery report in time counts as failed
    ACK_TIMEOUT = "ack_timeout"  # an acknowledgement ran out: paging starts over


@dataclass(frozen=True, slots=True)
class IncidentPage:
    """One SMS to queue: once queued, pass its job id to `attach_job`."""

    incident: int
    page: int
    step: int
    pass_index: int
    name: str
    mobile: str
    via: str  # the `notify` entry that reached the number
    code: int  # the reply code it carries (`{code}a` acknowledges)
    text: str


@dataclass(frozen=True, slots=True)
class Escalation:
    """What one call decided: the pages to queue now, and what else to tell."""

    incident: Incident | None
    pages: tuple[IncidentPage, ...] = ()
    nobody_on_call: tuple[str, ...] = ()  # schedules that had nobody: a warning each
    cause: Cause | None = None  # set when paging moved on before its time
    exhausted: bool = False  # every step and repeat went unanswered: raise a `system` event
    transition: Transition | None = None  # a state change (re-triggered, or un-acknowledged)


def page_text(incident: Incident, code: int) -> str:
    """The page: what it is about, and how to answer it."""
    return (
        f"[#{incident.id}] {incident.title} - reply {code}a to ack, {code}c to close, "
        f"{code}e to escalate"
    )


def _encode(timeline: Sequence[TimelineEntry]) -> str:
    items: list[dict[str, Any]] = []
    for entry in timeline:
        item: dict[str, Any] = {
            "offset": entry.offset.total_seconds(),
            "step": entry.step,
            "pass": entry.pass_index,
        }
        if isinstance(entry, NobodyOnCall):
            item["nobody"] = entry.schedule
        else:
            item["targets"] = [[t.name, t.number, t.via] for t in entry.targets]
        items.append(item)
    return json.dumps(items, ensure_ascii=False, separators=(",", ":"))


def _timeline(conn: Connection, incident_id: int) -> list[dict[str, Any]]:
    row = conn.execute("SELECT timeline FROM incidents WHERE id = ?", (incident_id,)).fetchone()
    entries: list[dict[str, Any]] = json.loads(row["timeline"])
    return entries


def start_escalation(
    conn: Connection, incident_id: int, timeline: Sequence[TimelineEntry], now: float
) -> Escalation:
    """Start paging a just opened incident along its policy's `escalation_timeline` (computed
    from `now`): the pages due at once are returned, the next step is left on a timer."""
    conn.execute(
        "UPDATE incidents SET timeline = ?, position = 0, base = ?, updated_at = ? WHERE id = ?",
        (_encode(timeline), now, now, incident_id),
    )
    incident = incidents.get(conn, incident_id)
    assert incident is not None
    return _advance(conn, incident, now)


def _page(
    conn: Connection,
    incident: Incident,
    position: int,
    entry: dict[str, Any],
    target: list[str],
    now: float,
) -> IncidentPage:
    name, mobile, via = target
    code = incidents.code_for(conn, incident.id, mobile, now)
    # The code is held in the number's conversations (the one counter chat codes use too),
    # until the incident resolves; the job id is filled in by attach_job.
    conversation_id = conversations.record_conversation(
        conn, mobile, 0, incident.event_id, incident.conversation, now, OPEN_UNTIL - now, code
    )
    cursor = conn.execute(
        """INSERT INTO incident_pages (incident_id, conversation_id, name, mobile, code,
               position, step, pass_index, paged_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
               RETURNING id""",
        (
            incident.id,
            conversation_id,
            name,
            mobile,
            code,
            position,
            entry["step"],
            entry["pass"],
            now,
        ),
    )
    page_id = int(cursor.fetchone()[0])
    timers.schedule(conn, REPORT_TIMER, str(page_id), now + incident.report_timeout, now)
    return IncidentPage(
        incident.id,
        page_id,
        entry["step"],
        entry["pass"],
        name,
        mobile,
        via,
        code,
        page_text(incident, code),
    )


def _advance(
    conn: Connection,
    incident: Incident,
    now: float,
    cause: Cause | None = None,
    transition: Transition | None = None,
) -> Escalation:
    """Page every entry due by now, then set the timer for the next (or for the end)."""
    entries = _timeline(conn, incident.id)
    position = incident.position
    pages: list[IncidentPage] = []
    nobody: list[str] = []
    while position < len(entries) and incident.base + entries[position]["offset"] <= now:
        entry = entries[position]
        if "nobody" in entry:
            nobody.append(entry["nobody"])
        else:
            pages.extend(_page(conn, incident, position, entry, t, now) for t in entry["targets"])
        position += 1
    exhausted = False
    key = str(incident.id)
    if position < len(entries):
        due_at = incident.base + entries[position]["offset"]
        timers.schedule(conn, STEP_TIMER, key, due_at, now, replace=True)
    elif position == len(entries):
        last = entries[-1]["offset"] if entries else 0.0
        # Nobody was ever on the timeline to page: nobody to wait for either.
        wait = incident.final_wait if any("targets" in entry for entry in entries) else 0.0
        end = incident.base + last + wait
        if end <= now:
            exhausted = True  # reported once: the position moves past the end
            position += 1
            timers.cancel(conn, STEP_TIMER, key)
        else:
            timers.schedule(conn, STEP_TIMER, key, end, now, replace=True)
    conn.execute(
        "UPDATE incidents SET position = ?, updated_at = ? WHERE id = ?",
        (position, now, incident.id),
    )
    return Escalation(
        incidents.get(conn, incident.id),
        tuple(pages),
        tuple(nobody),
        cause,
        exhausted,
        transition,
    )


def postpone(conn: Connection, incident_id: int, until: float, now: float) -> None:
    """Make a triggered incident's escalation wait until `until` (everyone it paged is in quiet
    hours): the rest of its timeline moves on by the wait, so nobody else is woken for it."""
    incident = incidents.get(conn, incident_id)
    if incident is None or incident.state is not State.TRIGGERED or until <= now:
        return
    key = str(incident_id)
    step = timers.get(conn, STEP_TIMER, key)
    if step is None:
        return
    wait = until - now
    conn.execute(
        "UPDATE incidents SET base = base + ?, updated_at = ? WHERE id = ?",
        (wait, now, incident_id),
    )
    timers.schedule(conn, STEP_TIMER, key, step.due_at + wait, now, replace=True)


def on_timer(conn: Connection, timer: timers.Timer, now: float) -> Escalation:
    """Fire one of the TIMER_KINDS timers (in the transaction that removes it): the next step, an
    acknowledgement running out, or a page's delivery report not coming in time."""
    if timer.kind == REPORT_TIMER:
        row = conn.execute(
            "SELECT * FROM incident_pages WHERE id = ? AND status = 'pending'", (int(timer.key),)
        ).fetchone()
        return _settle_page(conn, row, "timeout", now, Cause.REPORT_TIMEOUT)
    incident = incidents.get(conn, int(timer.key))
    if incident is None:
        return Escalation(None)
    if timer.kind == STEP_TIMER:
        if incident.state is not State.TRIGGERED:
            return Escalation(incident)
        return _advance(conn, incident, now)
    if timer.kind == ACK_TIMER:
        return _retrigger(conn, incident, now)
    raise ValueError(f"not an escalation timer: {timer.kind}")


def _retrigger(conn: Connection, incident: Incident, now: float) -> Escalation:
    if incident.state is not State.ACKNOWLEDGED or (incident.acked_until or now) > now:
        return Escalation(incident)
    conn.execute(
        """UPDATE incidents SET state = ?, acked_until = NULL, position = 0, base = ?,
               updated_at = ? WHERE id = ?""",
        (State.TRIGGERED, now, now, incident.id),
    )
    fresh = incidents.get(conn, incident.id)
    assert fresh is not None
    transition = Transition(
        fresh, Change.RETRIGGERED, incident.state, paged=incidents.paged(conn, incident.id)
    )
    return _advance(conn, fresh, now, Cause.ACK_TIMEOUT, transition)


def escalate(
    conn: Connection, incident_id: int, now: float, cause: Cause, by: str = ""
) -> Escalation:
    """Page the next step now (asked for, or the step's pages all failed), and the ones after
    it from here. An acknowledged incident asked to escalate is no longer acknowledged."""
    incident = incidents.get(conn, incident_id)
    if incident is None or incident.state is State.RESOLVED:
        return Escalation(incident)
    transition = None
    if incident.state is State.ACKNOWLEDGED:
        timers.cancel(conn, ACK_TIMER, str(incident_id))
        conn.execute(
            "UPDATE incidents SET state = ?, acked_until = NULL WHERE id = ?",
            (State.TRIGGERED, incident_id),
        )
    entries = _timeline(conn, incident_id)
    base = now - entries[incident.position]["offset"] if incident.position < len(entries) else 0.0
    if incident.position >= len(entries):
        # Nobody left to page: the end comes now.
        base = now - (entries[-1]["offset"] if entries else 0.0) - incident.final_wait
    conn.execute("UPDATE incidents SET base = ? WHERE id = ?", (base, incident_id))
    fresh = incidents.get(conn, incident_id)
    assert fresh is not None
    if incident.state is State.ACKNOWLEDGED:
        transition = Transition(
            fresh, Change.ESCALATED, incident.state, by, incidents.paged(conn, incident_id)
        )
    return _advance(conn, fresh, now, cause, transition)


def attach_job(conn: Connection, page_id: int, job_id: int) -> None:
    """Link a page to the SMS job queued for it (delivery reports and replies find it so)."""
    conn.execute("UPDATE incident_pages SET job_id = ? WHERE id = ?", (job_id, page_id))
    conn.execute(
        """UPDATE conversations SET job_id = ?
           WHERE id = (SELECT conversation_id FROM incident_pages WHERE id = ?)""",
        (job_id, page_id),
    )


def delivery_report(conn: Connection, job_id: int, status: str, now: float) -> Escalation:
    """A delivery report (`delivered` / `failed` / `unknown`) for a job: when every page of the
    incident's latest step has failed (or timed out), the next step is paged at once. Only
    `failed` is a failure: an accepted or unknown report is not."""
    settled = status if status in ("delivered", "failed") else "unknown"
    row = conn.execute(
        "SELECT * FROM incident_pages WHERE job_id = ? AND status = 'pending'", (job_id,)
    ).fetchone()
    return _settle_page(conn, row, settled, now, Cause.FAILED_DELIVERY)


def _settle_page(
    conn: Connection, row: Row | None, status: str, now: float, cause: Cause
) -> Escalation:
    """Settle a pending page (None: it was settled before); fail over when its step failed."""
    if row is None:
        return Escalation(None)
    conn.execute("UPDATE incident_pages SET status = ? WHERE id = ?", (status, row["id"]))
    timers.cancel(conn, REPORT_TIMER, str(row["id"]))
    incident = incidents.get(conn, row["incident_id"])
    if incident is None or incident.state is not State.TRIGGERED or status not in FAILED:
        return Escalation(incident)
    latest = conn.execute(
        "SELECT MAX(position) AS at FROM incident_pages WHERE incident_id = ?", (incident.id,)
    ).fetchone()["at"]
    if row["position"] != latest:
        return Escalation(incident)  # paging has moved on already
    statuses = {
        r["status"]
        for r in conn.execute(
            "SELECT status FROM incident_pages WHERE incident_id = ? AND position = ?",
            (incident.id, latest),
        )
    }
    if not statuses <= FAILED:
        return Escalation(incident)  # someone of the step may still get it
    return escalate(conn, incident.id, now, cause)
