"""Choosing the backend: a PostgreSQL URL, or else the SQLite file."""

from __future__ import annotations

from pathlib import Path

from bridge.store.base import Store


def make_store(path: Path, url: str | None = None) -> Store:
    """The store a config names (not opened yet): PostgreSQL at `url` when given, else `path`."""
    if url:
        # Imported here: a SQLite deployment never loads psycopg.
        from bridge.store.postgres import PostgresStore

        return PostgresStore(url)
    from bridge.store.sqlite import SqliteStore

    return SqliteStore(path)
