"""The store on each backend: per-write rollback, durability; SQLite's group commit."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from bridge.plugin.base import StoreUnavailableError
from bridge.store import Connection, SqliteStore, Store


async def opened(make: Callable[[], Store]) -> Store:
    """A store with a scratch table `t` beside the daemon's own."""
    store = make()
    await store.open()
    await store.write(
        lambda conn: conn.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER NOT NULL)")
    )
    return store


def insert(value: int):  # type: ignore[no-untyped-def]
    def work(conn: Connection) -> int:
        conn.execute("INSERT INTO t (x) VALUES (?)", (value,))
        return value

    return work


def count(conn: Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])


async def test_concurrent_writes_share_commits(tmp_path: Path) -> None:
    """SQLite: many concurrent writers are committed in far fewer transactions than writes."""
    store = await opened(partial(SqliteStore, tmp_path / "s.db"))
    results = await asyncio.gather(*(store.write(insert(i)) for i in range(200)))
    assert results == list(range(200))
    assert store.commits < 50
    assert await store.read(count) == 200
    await store.close()


async def test_a_failing_write_rolls_back_alone(store_factory: Callable[[], Store]) -> None:
    """One write raising does not undo the writes batched with it."""
    store = await opened(store_factory)

    def bad(conn: Connection) -> None:
        conn.execute("INSERT INTO t (x) VALUES (999)")
        raise ValueError("boom")

    outcomes = await asyncio.gather(
        store.write(insert(1)), store.write(bad), store.write(insert(2)), return_exceptions=True
    )
    assert outcomes[0] == 1
    assert isinstance(outcomes[1], ValueError)
    assert outcomes[2] == 2
    assert await store.read(lambda c: sorted(r[0] for r in c.execute("SELECT x FROM t"))) == [1, 2]
    await store.close()


async def test_committed_writes_survive_reopening(store_factory: Callable[[], Store]) -> None:
    """What write() returned for is in the store when it is opened again."""
    store = await opened(store_factory)
    await store.write(insert(7))
    await store.close()
    again = await opened(store_factory)
    assert await again.read(count) == 1
    await again.close()


async def test_closed_store_refuses_writes(store_factory: Callable[[], Store]) -> None:
    """Writing to a store that is not open raises StoreUnavailableError (inputs answer 5xx)."""
    store = store_factory()
    with pytest.raises(StoreUnavailableError):
        await store.write(insert(1))


async def test_a_failing_pure_write_fails_alone(store_factory: Callable[[], Store]) -> None:
    """Pure writes share one savepoint; when one fails, the others still commit, and so do
    the guarded writes batched with them."""
    store = await opened(store_factory)

    def bad(conn: Connection) -> None:
        conn.execute("INSERT INTO t (x) VALUES (999)")
        raise ValueError("boom")

    outcomes = await asyncio.gather(
        store.write(insert(1), pure=True),
        store.write(bad, pure=True),
        store.write(insert(2), pure=True),
        store.write(insert(3)),
        store.write(insert(4), pure=True),
        return_exceptions=True,
    )
    assert outcomes[0] == 1
    assert isinstance(outcomes[1], ValueError)
    assert outcomes[2:] == [2, 3, 4]
    rows = await store.read(lambda c: sorted(r[0] for r in c.execute("SELECT x FROM t")))
    assert rows == [1, 2, 3, 4]
    await store.close()


async def test_writes_queued_before_close_are_committed(
    store_factory: Callable[[], Store],
) -> None:
    """close() lets every write already queued commit, then refuses new ones."""
    store = await opened(store_factory)
    writes = [asyncio.ensure_future(store.write(insert(i), pure=True)) for i in range(50)]
    await asyncio.sleep(0)  # every write is queued
    await store.close()
    assert [await w for w in writes] == list(range(50))
    with pytest.raises(StoreUnavailableError):
        await store.write(insert(99))
    again = await opened(store_factory)
    assert await again.read(count) == 50
    await again.close()
