"""The console's audit log: who did what, when, from where, and what came of it."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.store import Connection


@dataclass(frozen=True, slots=True)
class Entry:
    id: int
    at: float
    user: str
    role: str
    action: str  # login, login_failed, logout, acknowledge, close, retry, cancel, release, reply
    target: str  # 'incident #3', 'job #12', a masked number
    outcome: str
    remote: str


def record(conn: Connection, entry: Entry) -> None:
    """Add an entry (its id is assigned); runs inside the action's own transaction."""
    conn.execute(
        """INSERT INTO console_audit (at, person, role, action, target, outcome, remote)
           VALUES (?, ?, ?, ?, ?, ?, ?)""",
        (
            entry.at,
            entry.user,
            entry.role,
            entry.action,
            entry.target,
            entry.outcome,
            entry.remote,
        ),
    )


def recent(conn: Connection, *, before: int | None = None, limit: int = 100) -> list[Entry]:
    """Entries newest first, with ids below `before`."""
    rows = conn.execute(
        "SELECT * FROM console_audit WHERE id < ? ORDER BY id DESC LIMIT ?",
        (before if before is not None else 2**62, limit),
    ).fetchall()
    return [
        Entry(
            row["id"],
            row["at"],
            row["person"],
            row["role"],
            row["action"],
            row["target"],
            row["outcome"],
            row["remote"],
        )
        for row in rows
    ]
