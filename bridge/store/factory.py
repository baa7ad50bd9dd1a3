"""Choosing the backend: a PostgreSQL URL, or else the SQLite file.

psycopg is imported only where a PostgreSQL store is asked for: a SQLite deployment never loads
it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bridge.store.base import Store
from bridge.store.connection import Connection


def make_store(path: Path, url: str | None = None) -> Store:
    """The store a config names (not opened yet): PostgreSQL at `url` when given, else `path`."""
    if url:
        from bridge.store.postgres import PostgresStore

        return PostgresStore(url)
    from bridge.store.sqlite import SqliteStore

    return SqliteStore(path)


@contextmanager
def read_only_database(url: str) -> Iterator[Connection]:
    """A read-only connection of its own on the PostgreSQL store at `url` (history commands)."""
    from bridge.store.postgres import read_only

    with read_only(url) as conn:
        yield conn


def describe_url(url: str) -> str:
    """A PostgreSQL URL for people: `postgresql://user@host:port/dbname`, no password."""
    from bridge.store.postgres import describe

    return describe(url)
