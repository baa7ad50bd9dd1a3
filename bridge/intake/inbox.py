"""The inbox: verified deliveries stored once, durably, before the sender is answered.

A row is a webhook body (kind `input`, read back by its input's `parse`) or a chunk of records a
reply source polled (kind `replies` / `reports`). The processor takes unprocessed rows in id
order and marks each processed in the same transaction as its effects, so a crash replays
exactly the rows whose effects were not committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bridge.store import Connection, Dialect, dialect, ledger


class InboxKind(StrEnum):
    """What an inbox row holds."""

    INPUT = "input"  # a webhook body, as its input's parse reads it
    REPLIES = "replies"  # a chunk of SMS replies a reply source polled (JSON records)
    REPORTS = "reports"  # a chunk of delivery reports (JSON records)


@dataclass(frozen=True, slots=True)
class InboxRow:
    """An unprocessed row; `body` is filled only where the processor has to read it."""

    id: int
    source: str
    kind: InboxKind
    body: bytes | None = None


def store(
    conn: Connection,
    source: str,
    body: bytes,
    now: float,
    *,
    kind: InboxKind = InboxKind.INPUT,
    dedupe_key: str = "",
    dedupe_window: float = 0.0,
) -> int:
    """Store one delivery; returns its row id, or 0 when it is a duplicate within its window."""
    if dedupe_key and dialect(conn) is Dialect.POSTGRESQL:
        # One round trip instead of two (each costs both sides more than the insert itself):
        # `ledger.seen_within`'s statement as a CTE, the row inserted only if it recorded the key.
        row = conn.execute(
            _STORE_ONCE_PG,
            (dedupe_key, now + dedupe_window, now, source, kind.value, body, now),
        ).fetchone()
        return 0 if row is None else int(row[0])
    if dedupe_key and ledger.seen_within(conn, dedupe_key, now, dedupe_window):
        return 0
    cursor = conn.execute(
        "INSERT INTO inbox (source, kind, body, received_at) VALUES (?, ?, ?, ?) RETURNING id",
        (source, kind.value, body, now),
    )
    return int(cursor.fetchone()[0])


_STORE_ONCE_PG = """WITH fresh AS (
    INSERT INTO dedupe (key, expires_at) VALUES (?, ?)
    ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at
    WHERE dedupe.expires_at <= ? RETURNING key)
INSERT INTO inbox (source, kind, body, received_at)
SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM fresh) RETURNING id"""


def unprocessed(conn: Connection, after: int, limit: int) -> list[InboxRow]:
    """Up to `limit` unprocessed rows with ids above `after`, oldest first, without bodies."""
    rows = conn.execute(
        """SELECT id, source, kind FROM inbox WHERE processed_at IS NULL AND id > ?
           ORDER BY id LIMIT ?""",
        (after, limit),
    ).fetchall()
    return [InboxRow(row["id"], row["source"], InboxKind(row["kind"])) for row in rows]


def bodies(conn: Connection, ids: list[int]) -> dict[int, bytes]:
    """The stored bodies of these rows."""
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    rows = conn.execute(
        f"SELECT id, body FROM inbox WHERE id IN ({marks})",  # noqa: S608 - only placeholders
        ids,
    ).fetchall()
    return {row["id"]: bytes(row["body"]) for row in rows}


def mark_processed(conn: Connection, ids: list[int], now: float, error: str = "") -> None:
    """Settle rows: their effects are committed in this same transaction (or they failed)."""
    conn.executemany(
        "UPDATE inbox SET processed_at = ?, error = ? WHERE id = ?",
        [(now, error, row_id) for row_id in ids],
    )


def backlog(conn: Connection) -> tuple[int, float | None]:
    """How many rows wait for the processor, and when the oldest of them arrived."""
    row = conn.execute(
        "SELECT count(*) AS n, min(received_at) AS t FROM inbox WHERE processed_at IS NULL"
    ).fetchone()
    return int(row["n"]), None if row["t"] is None else float(row["t"])
