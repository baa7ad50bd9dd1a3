"""Fixtures for both storage backends: one PostgreSQL cluster per session, a database per test,
and the `store` fixture that runs a test once on SQLite and once on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from pathlib import Path

import pytest

from bridge.store import Dialect, SqliteStore, Store
from tests.pg_cluster import Cluster, running_cluster, unavailable


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """A throwaway PostgreSQL cluster (skips the test, saying why, where none can start)."""
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> Iterator[str]:
    """The URL of a database of this test's own, with the schema of every migration."""
    with pg_cluster.database() as url:
        yield url


def open_store(dialect: Dialect, folder: Path, url: str = "") -> Store:
    """A store of the given backend, not opened yet: a SQLite file in `folder`, or `url`."""
    if dialect is Dialect.SQLITE:
        return SqliteStore(folder / "store.sqlite3", synchronous="OFF")
    from bridge.store.postgres import PostgresStore

    return PostgresStore(url)


@pytest.fixture(params=[Dialect.SQLITE, Dialect.POSTGRESQL], ids=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Dialect, str]]:
    """Each backend in turn, with where its store lives (PostgreSQL: a fresh database)."""
    dialect: Dialect = request.param
    if dialect is Dialect.SQLITE:
        yield dialect, ""
        return
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    with cluster.database() as url:
        yield dialect, url


@pytest.fixture
def store_factory(backend: tuple[Dialect, str], tmp_path: Path) -> Callable[[], Store]:
    """Makes (unopened) stores on this test's backend, all on the same file or database: a
    test restarts by closing one and opening the next."""
    return partial(open_store, backend[0], tmp_path, backend[1])


@pytest.fixture
async def store(store_factory: Callable[[], Store]) -> AsyncIterator[Store]:
    """An open store, once on SQLite and once on PostgreSQL."""
    opened = store_factory()
    await opened.open()
    yield opened
    await opened.close()
