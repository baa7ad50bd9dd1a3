"""The inbox: verified deliveries stored once, durably, before the sender is answered.

A row is a webhook body (kind `input`, read back by its input's `parse`) or a chunk of records a
reply source polled (kind `replies` / `reports`). The processor takes unprocessed rows in id
order and marks each processed in the same transaction as its effects, so a crash replays
exactly the rows whose effects were not committed.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    """Store one delivery; returns its row id, or 0 when it is a duplicate within its window
    (a window of 0 takes nothing as a duplicate)."""
    if dedupe_window <= 0:
        dedupe_key = ""
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


@dataclass(frozen=True, slots=True)
class NewRow:
    """A delivery to store (`store_many`): `dedupe_key` names it for `dedupe_window` seconds."""

    source: str
    body: bytes
    received_at: float
    kind: InboxKind = InboxKind.INPUT
    dedupe_key: str = ""
    dedupe_window: float = 0.0


def store_many(conn: Connection, rows: Sequence[NewRow]) -> list[int]:
    """Store deliveries with two statements in all; each one's row id, or 0 for a duplicate.

    A key already live in the ledger, or repeated within `rows`, is a duplicate (its first
    occurrence is stored). The ids of one INSERT follow the order of its VALUES, so sorting the
    returned ids matches them to the rows.
    """
    if len(rows) == 1:  # one statement (one round trip on PostgreSQL) instead of two
        row = rows[0]
        return [
            store(
                conn,
                row.source,
                row.body,
                row.received_at,
                kind=row.kind,
                dedupe_key=row.dedupe_key,
                dedupe_window=row.dedupe_window,
            )
        ]
    first: dict[str, int] = {}  # each key's first row
    for index, row in enumerate(rows):
        if row.dedupe_key and row.dedupe_window > 0:
            first.setdefault(row.dedupe_key, index)
    fresh = _record_keys(conn, [rows[index] for index in first.values()]) if first else set()
    kept = [
        index
        for index, row in enumerate(rows)
        if not (row.dedupe_key and row.dedupe_window > 0)
        or (row.dedupe_key in fresh and first[row.dedupe_key] == index)
    ]
    ids = [0] * len(rows)
    if kept:
        values = ",".join(["(?, ?, ?, ?)"] * len(kept))
        cursor = conn.execute(
            "INSERT INTO inbox (source, kind, body, received_at) VALUES "  # noqa: S608
            + values
            + " RETURNING id",
            [
                value
                for index in kept
                for value in (
                    rows[index].source,
                    rows[index].kind.value,
                    rows[index].body,
                    rows[index].received_at,
                )
            ],
        )
        for index, row_id in zip(
            kept, sorted(int(found[0]) for found in cursor.fetchall()), strict=True
        ):
            ids[index] = row_id
    return ids


def _record_keys(conn: Connection, rows: list[NewRow]) -> set[str]:
    """Record the keys not live in the ledger (`ledger.seen_within` for many); those recorded."""
    now = max(row.received_at for row in rows)
    values = ",".join(["(?, ?)"] * len(rows))
    cursor = conn.execute(
        "INSERT INTO dedupe (key, expires_at) VALUES "  # noqa: S608 - only placeholders
        + values
        + " ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at"
        " WHERE dedupe.expires_at <= ? RETURNING key",
        [*(v for row in rows for v in (row.dedupe_key, row.received_at + row.dedupe_window)), now],
    )
    return {str(found[0]) for found in cursor.fetchall()}


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
