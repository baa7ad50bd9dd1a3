"""PostgreSQL's schema versions: the steps of `bridge.store.migrations`, applied under a lock.

Several instances may start at once, and during a rolling upgrade old and new code share one
database. So: a step is applied by whichever instance first takes `pg_advisory_lock`, the
others find it done; every step is recorded in `schema_versions` with the oldest code version
allowed to run on the schema from then on; code older than the schema still starts unless the
schema says it is too old (migrations only add, so an older release ignores what it does not
know).
"""

from __future__ import annotations

from collections.abc import Sequence

from bridge.store.connection import Connection
from bridge.store.migrations import MIGRATIONS, Migration, SchemaTooNewError, latest

# pg_advisory_lock's key for schema changes: "smsb" in ASCII, an arbitrary constant.
LOCK_KEY = 0x736D7362

_TABLE = """CREATE TABLE IF NOT EXISTS schema_versions (
    version INTEGER PRIMARY KEY,
    oldest_code INTEGER NOT NULL,
    summary TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)"""


def state(conn: Connection) -> tuple[int, int]:
    """The schema's version and the oldest code version that may run on it ((0, 0): none)."""
    exists = conn.execute("SELECT to_regclass('schema_versions') IS NOT NULL").fetchone()[0]
    if not exists:
        return 0, 0
    row = conn.execute(
        "SELECT coalesce(max(version), 0), coalesce(max(oldest_code), 0) FROM schema_versions"
    ).fetchone()
    return int(row[0]), int(row[1])


def version(conn: Connection) -> int:
    return state(conn)[0]


def check(conn: Connection, steps: Sequence[Migration] = MIGRATIONS) -> int:
    """The schema's version; raises SchemaTooNewError when it says this code is too old."""
    found, oldest = state(conn)
    if oldest > latest(steps):
        raise SchemaTooNewError(
            f"the database's schema is version {found} and needs smsbridge code of schema "
            f"version {oldest} or newer, but this smsbridge knows versions up to "
            f"{latest(steps)}: upgrade this instance"
        )
    return found


def upgrade(conn: Connection, steps: Sequence[Migration] = MIGRATIONS) -> list[Migration]:
    """Apply the steps the database lacks, each in its own transaction; returns those applied.

    `conn` must be in autocommit mode. Holds the advisory lock throughout, so instances that
    start together apply each step once, in order.
    """
    conn.execute("SELECT pg_advisory_lock(?)", (LOCK_KEY,)).fetchall()
    try:
        conn.execute(_TABLE)
        applied: list[Migration] = []
        current = check(conn, steps)
        for step in steps:
            if step.version <= current:
                continue
            if step.postgresql is None:
                raise ValueError(
                    f"migration {step.version} ({step.summary}) has no PostgreSQL body yet"
                )
            if current != step.version - 1:
                raise ValueError(f"migration {step.version} follows {current}: a step is missing")
            conn.execute("BEGIN")
            try:
                step.postgresql(conn)
                oldest = max(s.oldest_code for s in steps if s.version <= step.version)
                conn.execute(
                    "INSERT INTO schema_versions (version, oldest_code, summary) VALUES (?, ?, ?)",
                    (step.version, oldest, step.summary),
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            applied.append(step)
            current = step.version
        return applied
    finally:
        conn.execute("SELECT pg_advisory_unlock(?)", (LOCK_KEY,)).fetchall()
