"""The connection and row types that units of work receive from the store, whatever its backend.

SQLite hands units its own `sqlite3.Connection` (no wrapper: nothing is added per statement);
PostgreSQL hands them a thin adapter (`bridge.store.pg_connection`) with the same methods. Units
write SQL with `?` (or `:name`) placeholders; what differs between the two dialects is written
per dialect where it cannot be portable (`dialect(conn)` tells which).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from enum import StrEnum
from typing import Any, Protocol, TypeAlias

Params: TypeAlias = Sequence[Any] | Mapping[str, Any]


class Dialect(StrEnum):
    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"


class Row(Protocol):
    """A result row: by position (`row[0]`) and by column name (`row["id"]`)."""

    def __getitem__(self, key: int | str, /) -> Any: ...
    def __len__(self) -> int: ...
    def keys(self) -> list[str]: ...


class Cursor(Protocol):
    """What a unit of work reads from a statement it ran."""

    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """What units of work use of a connection; `sqlite3.Connection` is one as it is."""

    def execute(self, sql: str, parameters: Params = ..., /) -> Cursor: ...
    def executemany(self, sql: str, parameters: Iterable[Params], /) -> Cursor: ...
    @property
    def in_transaction(self) -> bool: ...


def dialect(conn: Connection) -> Dialect:
    """Which SQL dialect `conn` speaks."""
    return Dialect.SQLITE if isinstance(conn, sqlite3.Connection) else Dialect.POSTGRESQL
