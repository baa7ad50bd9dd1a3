"""The few SQL fragments that differ between the store's backends, chosen by the connection."""

from __future__ import annotations

from bridge.store.connection import Connection, Dialect, dialect

# Seconds since the epoch by the database's own clock: every instance reads the same one, so a
# lease never depends on the hosts' clocks agreeing. (julianday keeps milliseconds.)
_NOW = {
    Dialect.SQLITE: "((julianday('now') - 2440587.5) * 86400.0)",
    Dialect.POSTGRESQL: "extract(epoch from clock_timestamp())::float8",
}


def now_sql(conn: Connection) -> str:
    """An SQL expression for the database's time now, in epoch seconds."""
    return _NOW[dialect(conn)]


def skip_locked(conn: Connection) -> str:
    """What ends a claim's inner SELECT: on PostgreSQL, rows another transaction is claiming
    are passed over instead of waited for; SQLite has one writer, so nothing is locked."""
    return " FOR UPDATE SKIP LOCKED" if dialect(conn) is Dialect.POSTGRESQL else ""


def share_lock(conn: Connection) -> str:
    """What ends a SELECT of a row that must not change until this transaction commits."""
    return " FOR SHARE" if dialect(conn) is Dialect.POSTGRESQL else ""


def db_now(conn: Connection) -> float:
    """The database's time now, in epoch seconds."""
    return float(conn.execute(f"SELECT {now_sql(conn)} AS now").fetchone()[0])
