"""Handing free pages back to the file system: incremental vacuum, and the one-off full VACUUM
that turns it on for a file made before it was the default.

Each function takes the writer's connection outside any transaction (`Store.maintain`). SQLite
only: PostgreSQL's autovacuum does this by itself.
"""

from __future__ import annotations

import sqlite3

from bridge.store.connection import Connection

INCREMENTAL = 2  # PRAGMA auto_vacuum's value for INCREMENTAL


def is_incremental(conn: Connection) -> bool:
    return int(conn.execute("PRAGMA auto_vacuum").fetchone()[0]) == INCREMENTAL


def free_pages(conn: Connection) -> int:
    return int(conn.execute("PRAGMA freelist_count").fetchone()[0])


def incremental_step(conn: Connection, pages: int) -> int:
    """Hand up to `pages` free pages back; returns how many went (0 when not incremental)."""
    assert isinstance(conn, sqlite3.Connection)  # SQLite's own
    before = free_pages(conn)
    # executescript steps the pragma to its end: execute() would free a single page.
    conn.executescript(f"PRAGMA incremental_vacuum({int(pages)});")
    return before - free_pages(conn)


def checkpoint(conn: Connection) -> None:
    """Copy the WAL into the file (passive: no waiting on readers); a file that lost pages is
    truncated to its new size here."""
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def make_incremental(conn: Connection) -> None:
    """Rewrite the whole file with incremental vacuum on: long, and writes wait meanwhile."""
    conn.execute(f"PRAGMA auto_vacuum={INCREMENTAL}")
    # VACUUM builds its copy as a temporary database: on disk, not in memory as large as the file.
    temp_store = int(conn.execute("PRAGMA temp_store").fetchone()[0])
    conn.execute("PRAGMA temp_store=FILE")
    try:
        conn.execute("VACUUM")
    finally:
        conn.execute(f"PRAGMA temp_store={temp_store}")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
