"""Storm state: alerts waiting in groups, and messages held back by caps or the budget.

Functions here take a sqlite3 connection and run inside a Store.write()/read() call, so a
caller composes several of them into one atomic, group-committed transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bridge.store import Connection


def add_group_member(
    conn: Connection,
    rule: str,
    group_key: str,
    output: str,
    recipient: str,
    event_id: int,
    now: float,
    wait: float,
) -> None:
    """Add an event to its pending group; the group flushes `wait` after its first member."""
    row = conn.execute(
        """SELECT min(flush_at) AS f FROM group_members
           WHERE rule = ? AND group_key = ? AND output = ? AND recipient = ?""",
        (rule, group_key, output, recipient),
    ).fetchone()
    flush_at = row["f"] if row["f"] is not None else now + wait
    conn.execute(
        """INSERT INTO group_members (rule, group_key, output, recipient, event_id, flush_at,
                                      created_at) VALUES (?, ?, ?, ?, ?, ?, ?)""",
        (rule, group_key, output, recipient, event_id, flush_at, now),
    )


@dataclass(frozen=True, slots=True)
class DueGroup:
    """A group whose wait is over: its members, oldest first."""

    rule: str
    group_key: str
    output: str
    recipient: str
    event_ids: tuple[int, ...]


def take_due_groups(conn: Connection, now: float) -> list[DueGroup]:
    """Remove and return every group due by now."""
    rows = conn.execute(
        """DELETE FROM group_members WHERE flush_at <= ?
           RETURNING rule, group_key, output, recipient, event_id, id""",
        (now,),
    ).fetchall()
    groups: dict[tuple[str, str, str, str], list[tuple[int, int]]] = {}
    for row in rows:
        key = (row["rule"], row["group_key"], row["output"], row["recipient"])
        groups.setdefault(key, []).append((row["id"], row["event_id"]))
    return [
        DueGroup(*key, event_ids=tuple(event for _, event in sorted(members)))
        for key, members in sorted(groups.items())
    ]


def next_group_flush(conn: Connection) -> float | None:
    row = conn.execute("SELECT min(flush_at) AS f FROM group_members").fetchone()
    return None if row["f"] is None else float(row["f"])


def hold(
    conn: Connection,
    output: str,
    recipient: str,
    rule: str,
    names: Sequence[str],
    reason: str,
    now: float,
) -> None:
    """Record messages held back (by a cap or the budget), one row per alert name."""
    conn.executemany(
        "INSERT INTO held (output, recipient, rule, name, reason, created_at) VALUES (?,?,?,?,?,?)",
        [(output, recipient, rule, name, reason, now) for name in names],
    )


@dataclass(frozen=True, slots=True)
class HeldSummary:
    """What was held back for one recipient: counts by alert name."""

    output: str
    recipient: str
    first_held: float
    counts: dict[str, int]
    reasons: tuple[str, ...]


def held_recipients(conn: Connection, before: float) -> list[tuple[str, str]]:
    """Recipients with messages held back since before `before`."""
    rows = conn.execute(
        """SELECT output, recipient FROM held GROUP BY output, recipient
           HAVING min(created_at) <= ?""",
        (before,),
    ).fetchall()
    return [(row["output"], row["recipient"]) for row in rows]


def take_held(conn: Connection, output: str, recipient: str) -> HeldSummary | None:
    """Remove and summarise everything held for a recipient."""
    rows = conn.execute(
        "DELETE FROM held WHERE output = ? AND recipient = ? RETURNING name, reason, created_at",
        (output, recipient),
    ).fetchall()
    if not rows:
        return None
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["name"]] = counts.get(row["name"], 0) + 1
    return HeldSummary(
        output=output,
        recipient=recipient,
        first_held=min(row["created_at"] for row in rows),
        counts=counts,
        reasons=tuple(sorted({row["reason"] for row in rows})),
    )
