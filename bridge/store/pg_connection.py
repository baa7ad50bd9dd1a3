"""Units of work on PostgreSQL: `?` / `:name` placeholders translated, rows by name and position.

The units are written once, for both backends, in SQLite's placeholder style; psycopg wants
`%s` / `%(name)s` and reads every `%` as its own. Each distinct statement is translated once
(cached), so a unit pays a dictionary look-up per statement here, and nothing on SQLite.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import psycopg
from psycopg.pq import TransactionStatus

from bridge.store.connection import Cursor, Params

# A string literal, a quoted identifier, a `::` cast, a placeholder, or a bare `%`.
_TOKEN = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|::|\?|(?<![:\w]):([A-Za-z_]\w*)|%""")


@functools.lru_cache(maxsize=2048)
def translate(sql: str) -> str:
    """`sql` with SQLite's placeholders in psycopg's style (`%` doubled, even in literals:
    psycopg reads every `%` of a statement it is given parameters for)."""

    def replace(match: re.Match[str]) -> str:
        found = match.group(0)
        if found == "?":
            return "%s"
        if found == "%":
            return "%%"
        if match.group(1) is not None:
            return f"%({match.group(1)})s"
        return found.replace("%", "%%")

    return _TOKEN.sub(replace, sql)


class PgRow(tuple[Any, ...]):
    """A row as a tuple that also answers to its column names (like `sqlite3.Row`)."""

    __slots__ = ()
    _names: ClassVar[tuple[str, ...]] = ()
    _columns: ClassVar[dict[str, int]] = {}

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._columns[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


@functools.lru_cache(maxsize=1024)
def _row_class(names: tuple[bytes | None, ...]) -> type[PgRow]:
    # One class per shape of result: a row then costs a tuple, its names are shared.
    text = tuple((name or b"").decode("utf-8", "replace") for name in names)
    columns = {name: index for index, name in reversed(list(enumerate(text)))}
    return type("PgRow", (PgRow,), {"__slots__": (), "_names": text, "_columns": columns})


def row_factory(cursor: psycopg.Cursor[Any]) -> type[PgRow]:
    """psycopg's row factory for PgRow (names read off the result, as bytes: `description`
    would build an object per column for every statement)."""
    result = cursor.pgresult
    if result is None:
        return _row_class(())
    return _row_class(tuple(result.fname(index) for index in range(result.nfields)))


class PgConnection:
    """A psycopg connection as `bridge.store.Connection`."""

    __slots__ = ("raw",)

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw

    def execute(self, sql: str, parameters: Params = (), /) -> Cursor:
        return self.raw.execute(translate(sql), parameters)

    def executemany(self, sql: str, parameters: Iterable[Params], /) -> Cursor:
        cursor = self.raw.cursor()
        rows: Sequence[Params] = list(parameters)
        if rows:
            cursor.executemany(translate(sql), rows)
        return cursor

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != TransactionStatus.IDLE
