"""What the daemon has seen: de-duplication keys, replay memory, raw poll answers, settings.

Functions here take a store connection and run inside a Store.write()/read() call, so a
caller composes several of them into one atomic, group-committed transaction.
"""

from __future__ import annotations

from bridge.store.connection import Connection


def seen_within(conn: Connection, key: str, now: float, window: float) -> bool:
    """True if `key` was recorded within its window; otherwise record it for `window` seconds."""
    # One statement: a key that is new or past its window is (re)written and returned; a live
    # one is left as it is and nothing comes back.
    row = conn.execute(
        """INSERT INTO dedupe (key, expires_at) VALUES (?, ?)
           ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at
           WHERE dedupe.expires_at <= ? RETURNING key""",
        (key, now + window, now),
    ).fetchone()
    return row is None


def forget(conn: Connection, key: str) -> None:
    conn.execute("DELETE FROM dedupe WHERE key = ?", (key,))


def first_time(conn: Connection, key: str, now: float) -> bool:
    """True the first time a polled record's key is seen (reads may repeat records)."""
    cursor = conn.execute(
        "INSERT INTO seen_records (key, seen_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
        (key, now),
    )
    return cursor.rowcount == 1


def claim(conn: Connection, key: str, value: str, now: float, window: float) -> bool:
    """Record that `key` was used with `value` for `window` seconds; False when it was used
    with another value within its window (the same value again is a redelivery, and passes)."""
    row = conn.execute("SELECT value, expires_at FROM replay WHERE key = ?", (key,)).fetchone()
    if row is not None and row["expires_at"] > now:
        return bool(row["value"] == value)
    conn.execute(
        """INSERT INTO replay (key, value, expires_at) VALUES (?, ?, ?) ON CONFLICT (key)
           DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at""",
        (key, value, now + window),
    )
    return True


def store_raw(conn: Connection, account: str, action: str, body: bytes, now: float) -> int:
    """Keep a destructive read's answer before anything is done with it."""
    cursor = conn.execute(
        """INSERT INTO raw_polls (account, action, body, received_at) VALUES (?, ?, ?, ?)
           RETURNING id""",
        (account, action, body, now),
    )
    return int(cursor.fetchone()[0])


def unprocessed_raw(conn: Connection) -> list[tuple[int, str, str, bytes]]:
    rows = conn.execute(
        "SELECT id, account, action, body FROM raw_polls WHERE processed_at IS NULL ORDER BY id"
    ).fetchall()
    return [(row["id"], row["account"], row["action"], bytes(row["body"])) for row in rows]


def mark_processed(conn: Connection, raw_id: int, now: float) -> None:
    conn.execute("UPDATE raw_polls SET processed_at = ? WHERE id = ?", (now, raw_id))


def get_setting(conn: Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row["value"])


def put_setting(conn: Connection, key: str, value: str) -> None:
    conn.execute(
        """INSERT INTO settings (key, value) VALUES (?, ?)
           ON CONFLICT (key) DO UPDATE SET value = excluded.value""",
        (key, value),
    )
