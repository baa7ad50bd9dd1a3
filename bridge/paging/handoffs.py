"""Handoffs told and members watched: the handoff SMS to whoever comes on call (one durable timer
per schedule), and the members whose last page was not delivered.

Functions here take a sqlite3 connection; those that write run inside a Store.write() call. A
handoff timer fires with its SMS queued in the same transaction, so each handoff is told once,
across restarts and instances.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from bridge.config.oncall import ScheduleConfig
from bridge.paging.schedules import next_handoffs, who_is_on_call
from bridge.rules import Directory, Recipient
from bridge.store import Connection, timers

HANDOFF_TIMER = "oncall.handoff"  # key: the schedule's name; due at its next handoff
LATE = 3600.0  # a handoff missed by more than this (the daemon was down) is not told late
UNDELIVERED = ("failed", "timeout")  # settled page statuses that mean it never arrived
_TIME = "%a %Y-%m-%d %H:%M %Z"


def _at(instant: float) -> datetime:
    return datetime.fromtimestamp(instant, UTC)


def _schedule_next(
    conn: Connection, name: str, schedule: ScheduleConfig, after: float, now: float
) -> None:
    """Set the schedule's timer to its first handoff after `after`; an overdue one stays, to
    be told (a daemon that was down fires it on its return)."""
    found = next_handoffs(schedule, _at(after), 1)
    existing = timers.get(conn, HANDOFF_TIMER, name)
    if not found:
        timers.cancel(conn, HANDOFF_TIMER, name)
        return
    due = found[0].at.timestamp()
    if existing is not None and (existing.due_at == due or existing.due_at <= now):
        return
    timers.schedule(conn, HANDOFF_TIMER, name, due, now, replace=True)


def ensure_timers(conn: Connection, schedules: Mapping[str, ScheduleConfig], now: float) -> None:
    """One handoff timer for each schedule with `handoff_sms`, none for the others."""
    wanted = {name for name, schedule in schedules.items() if schedule.handoff_sms}
    rows = conn.execute("SELECT key FROM timers WHERE kind = ?", (HANDOFF_TIMER,)).fetchall()
    for row in rows:
        if row["key"] not in wanted:
            timers.cancel(conn, HANDOFF_TIMER, row["key"])
    for name in sorted(wanted):
        _schedule_next(conn, name, schedules[name], now, now)


@dataclass(frozen=True, slots=True)
class HandoffText:
    """One SMS to someone coming on call."""

    schedule: str
    recipient: Recipient
    text: str


def on_timer(
    conn: Connection,
    timer: timers.Timer,
    schedules: Mapping[str, ScheduleConfig],
    directory: Directory,
    now: float,
) -> list[HandoffText]:
    """Fire a handoff timer (in the transaction that removes it): the texts to send, and the
    timer set for the next handoff. Nothing is told of a handoff the daemon slept through."""
    name = timer.key
    schedule = schedules.get(name)
    if schedule is None or not schedule.handoff_sms:
        return []
    _schedule_next(conn, name, schedule, timer.due_at, now)
    if now - timer.due_at > LATE:
        return []
    instant = _at(timer.due_at)
    zone = schedule.timezone
    text = f"smsbridge: you are on call for {name} from {instant.astimezone(zone):{_TIME}}"
    following = next_handoffs(schedule, instant, 1)
    if following:
        text += f" until {following[0].at.astimezone(zone):{_TIME}}"
    people = directory.resolve(who_is_on_call(schedule, instant))
    return [HandoffText(name, person, text) for person in people]


def members(schedule: ScheduleConfig) -> list[str]:
    """Everyone a schedule can put on call (rotations, layers, overrides), each once."""
    names = [m for rotation in schedule.rotations() for m in rotation.members]
    names += [override.who for override in schedule.overrides]
    return list(dict.fromkeys(names))


@dataclass(frozen=True, slots=True)
class Unreachable:
    """A schedule member whose last page did not arrive."""

    schedule: str
    member: str  # the contact's name
    number: str
    paged_at: float
    status: str  # failed (a report said so) or timeout (no report in time)


def last_page_status(conn: Connection, number: str) -> tuple[str, float] | None:
    """The status and time of the last settled page to `number`, or None."""
    row = conn.execute(
        """SELECT status, paged_at FROM incident_pages WHERE mobile = ? AND status != 'pending'
           ORDER BY id DESC LIMIT 1""",
        (number,),
    ).fetchone()
    return None if row is None else (str(row["status"]), float(row["paged_at"]))


def unreachable(
    conn: Connection, schedules: Mapping[str, ScheduleConfig], directory: Directory
) -> list[Unreachable]:
    """Members of each schedule whose last page failed to deliver (or got no report)."""
    found: list[Unreachable] = []
    for name in sorted(schedules):
        for person in directory.resolve(members(schedules[name])):
            last = last_page_status(conn, person.number)
            if last is not None and last[0] in UNDELIVERED:
                found.append(Unreachable(name, person.name, person.number, last[1], last[0]))
    return found


def schedules_of(
    schedules: Mapping[str, ScheduleConfig], directory: Directory, number: str
) -> list[str]:
    """The schedules `number` is a member of."""
    return [
        name
        for name in sorted(schedules)
        if any(p.number == number for p in directory.resolve(members(schedules[name])))
    ]
