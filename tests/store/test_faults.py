"""The store when the file cannot take writes: the whole batch fails, and the store says so."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.plugin.base import StoreUnavailableError
from bridge.store import SqliteStore, Store

SCHEMA = "CREATE TABLE IF NOT EXISTS t (x INTEGER NOT NULL);"


def insert(value: int, *, read_only: bool = False):  # type: ignore[no-untyped-def]
    """A write; `read_only` makes it meet a real SQLITE_READONLY (SQLite's own switch, on for
    this statement only), as on a file system remounted read-only."""

    def work(conn: sqlite3.Connection) -> int:
        conn.execute(f"PRAGMA query_only = {int(read_only)}")
        try:
            conn.execute("INSERT INTO t (x) VALUES (?)", (value,))
        finally:
            conn.execute("PRAGMA query_only = 0")
        return value

    return work


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = SqliteStore(tmp_path / "s.db")
    await opened.open()
    await opened.write(lambda conn: conn.execute(SCHEMA))
    yield opened
    await opened.close()


async def test_a_storage_fault_fails_the_whole_batch(store: Store) -> None:
    """A write that meets a read-only file fails its batch, not only itself: callers of the
    batch get StoreUnavailableError (inputs answer 503), and nothing of it is stored."""
    assert await store.write(insert(1)) == 1
    outcomes = await asyncio.gather(
        store.write(insert(2, read_only=True)), store.write(insert(3)), return_exceptions=True
    )
    assert all(isinstance(outcome, StoreUnavailableError) for outcome in outcomes)
    assert str(outcomes[0]) == "commit failed: attempt to write a readonly database"
    assert store.problem == "the last commit failed: attempt to write a readonly database"
    rows = await store.read(lambda c: [r[0] for r in c.execute("SELECT x FROM t ORDER BY x")])
    assert rows == [1]


async def test_only_a_commit_that_wrote_clears_the_failure(store: Store) -> None:
    """A batch that changed nothing proves nothing about the disk; one that wrote does."""
    with pytest.raises(StoreUnavailableError):
        await store.write(insert(1, read_only=True))
    await store.write(lambda conn: conn.execute("SELECT 1").fetchone())
    assert store.problem.startswith("the last commit failed")
    assert await store.write(insert(2)) == 2
    assert store.problem == ""


async def test_an_ordinary_error_still_fails_alone(store: Store) -> None:
    """A constraint error is about one write's SQL: the batch around it commits."""

    def bad(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t (x) VALUES (NULL)")

    outcomes = await asyncio.gather(
        store.write(insert(1)), store.write(bad), store.write(insert(2)), return_exceptions=True
    )
    assert outcomes[0] == 1
    assert isinstance(outcomes[1], sqlite3.IntegrityError)
    assert outcomes[2] == 2
    assert store.problem == ""
