"""Handing free pages back to the file system: incremental vacuum, and the one-off full VACUUM
that turns it on for a file made before it was the default.

Each function takes the writer's connection outside any transaction (`Store.maintain`).
"""

from __future__ import annotations

import sqlite3

INCREMENTAL = 2  # PRAGMA auto_vacuum's value for INCREMENTAL


def is_incremental(conn: sqlite3.Connection) -> bool:
    return int(conn.execute("PRAGMA auto_vacuum").fetchone()[0]) == INCREMENTAL


def make_incremental(conn: sqlite3.Connection) -> None:
    """Rewrite the whole file with incremental vacuum on: long, and writes wait meanwhile."""
    conn.execute(f"PRAGMA auto_vacuum={INCREMENTAL}")
    conn.execute("VACUUM")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
