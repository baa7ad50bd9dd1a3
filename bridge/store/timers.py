"""Durable timers: rows with a due time, fired and removed in the transaction of their effect.

Functions here take a sqlite3 connection and run inside a Store.write() call. The pattern that
makes a timer fire exactly once is `fire_due` (or `due` + `fire` by hand): the effect and the
removal of the row commit together, so a crash before the commit leaves the timer due (it fires
again after the restart) and a crash after it leaves nothing to fire.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bridge.store.connection import Connection, Row
from bridge.store.fragments import skip_locked

T = TypeVar("T")

# A claim that outlives this (its owner died between claim and fire) is taken again.
DEFAULT_LEASE = 60.0


@dataclass(frozen=True, slots=True)
class Timer:
    """One scheduled timer; `id` changes when it is replaced, so a stale copy never fires."""

    id: int
    kind: str
    key: str
    due_at: float
    payload: Mapping[str, Any] = field(default_factory=dict)


def _timer(row: Row) -> Timer:
    return Timer(row["id"], row["kind"], row["key"], row["due_at"], json.loads(row["payload"]))


def get(conn: Connection, kind: str, key: str) -> Timer | None:
    row = conn.execute("SELECT * FROM timers WHERE kind = ? AND key = ?", (kind, key)).fetchone()
    return _timer(row) if row else None


def schedule(
    conn: Connection,
    kind: str,
    key: str,
    due_at: float,
    now: float,
    payload: Mapping[str, Any] | None = None,
    *,
    replace: bool = False,
) -> Timer:
    """Schedule the (kind, key) timer; returns the timer that stands.

    Idempotent: when one is already scheduled it stays as it is, unless `replace`, which drops it
    and schedules this one under a new id (a copy of the old one taken earlier no longer fires).
    """
    existing = get(conn, kind, key)
    if existing is not None:
        if not replace:
            return existing
        conn.execute("DELETE FROM timers WHERE id = ?", (existing.id,))
    body = json.dumps(dict(payload or {}), separators=(",", ":"), sort_keys=True)
    cursor = conn.execute(
        """INSERT INTO timers (kind, key, due_at, payload, created_at) VALUES (?, ?, ?, ?, ?)
           RETURNING id""",
        (kind, key, due_at, body, now),
    )
    return Timer(int(cursor.fetchone()[0]), kind, key, due_at, json.loads(body))


def cancel(conn: Connection, kind: str, key: str) -> bool:
    """Drop the (kind, key) timer; False when there was none."""
    cursor = conn.execute("DELETE FROM timers WHERE kind = ? AND key = ?", (kind, key))
    return cursor.rowcount == 1


def due(
    conn: Connection,
    now: float,
    limit: int,
    *,
    owner: str = "",
    lease: float = DEFAULT_LEASE,
) -> list[Timer]:
    """Take up to `limit` timers due by `now`, oldest due first, and claim them for `owner`.

    Timers claimed by another owner are skipped until their lease runs out. A caller that fires
    in the same transaction needs no owner: the claim commits (or not) with the firing.
    """
    rows = conn.execute(
        """SELECT * FROM timers WHERE due_at <= ? AND (claimed_until <= ? OR claimed_by = ?)
           ORDER BY due_at, id LIMIT ?"""  # noqa: S608 - a fixed clause is appended
        + skip_locked(conn),  # another instance firing a timer: take the next, do not wait
        (now, now, owner, limit),
    ).fetchall()
    taken = [_timer(row) for row in rows]
    conn.executemany(
        "UPDATE timers SET claimed_by = ?, claimed_until = ? WHERE id = ?",
        [(owner, now + lease, timer.id) for timer in taken],
    )
    return taken


def fire(conn: Connection, timer: Timer) -> bool:
    """Remove the timer as fired; True when it was still there (run its effect only then)."""
    cursor = conn.execute("DELETE FROM timers WHERE id = ?", (timer.id,))
    return cursor.rowcount == 1


def fire_due(
    conn: Connection,
    now: float,
    limit: int,
    effect: Callable[[Connection, Timer], T],
) -> list[T]:
    """Fire up to `limit` due timers: each one's effect and its removal in this transaction."""
    return [effect(conn, timer) for timer in due(conn, now, limit) if fire(conn, timer)]


def next_due(conn: Connection) -> float | None:
    """When the next timer can be taken (a claimed one: when its lease runs out), or None."""
    row = conn.execute(
        """SELECT MIN(CASE WHEN claimed_until > due_at THEN claimed_until ELSE due_at END) AS at
           FROM timers"""
    ).fetchone()
    return None if row["at"] is None else float(row["at"])
