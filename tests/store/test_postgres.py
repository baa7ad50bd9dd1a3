"""The PostgreSQL store itself: SQL written for SQLite runs unchanged, rows read both ways,
versioned migrations under a lock, deadlocks retried, failures said without secrets."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bridge.store.migrations as migrations
import bridge.store.pg_migrations as pg_migrations
from bridge.plugin import StoreUnavailableError
from bridge.store import Connection, Dialect, SchemaTooNewError, SqliteStore, Store
from bridge.store.pg_connection import PgConnection, translate
from bridge.store.postgres import PostgresOpenError, PostgresStore, describe
from tests.pg_cluster import Cluster


async def test_rows_answer_by_position_and_by_name(store: Store) -> None:
    row = await store.read(
        lambda c: c.execute("SELECT 1 AS one, 'two' AS two, 1 AS one").fetchone()
    )
    assert (row[0], row[1], row["one"], row["two"]) == (1, "two", 1, "two")
    assert list(row.keys()) == ["one", "two", "one"]
    assert len(row) == 3
    assert tuple(row) == (1, "two", 1)


async def test_named_and_positional_placeholders_and_percent_signs(store: Store) -> None:
    def work(conn: Connection) -> list[object]:
        conn.execute("CREATE TABLE p (k TEXT, v TEXT)")
        conn.execute("INSERT INTO p (k, v) VALUES (?, '50% off?')", ("a",))
        conn.execute("INSERT INTO p (k, v) VALUES (:k, :v)", {"k": "b", "v": "100%", "x": 1})
        conn.executemany("INSERT INTO p (k, v) VALUES (?, ?)", [("c", "?"), ("d", ":v")])
        return [tuple(r) for r in conn.execute("SELECT k, v FROM p WHERE v LIKE '%' ORDER BY k")]

    assert await store.write(work) == [
        ("a", "50% off?"),
        ("b", "100%"),
        ("c", "?"),
        ("d", ":v"),
    ]


def test_translation_leaves_literals_and_casts_alone() -> None:
    assert translate("SELECT ?, :a, 'it''s ? :b %', \"c?\", x::text, 5 % 2") == (
        "SELECT %s, %(a)s, 'it''s ? :b %%', \"c?\", x::text, 5 %% 2"
    )


LITERAL = st.text(st.sampled_from("ab?%:'\" _-\\x"), max_size=12)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(literal=LITERAL, value=st.text(max_size=8).filter(lambda t: "\x00" not in t))
def test_any_literal_and_parameter_mean_the_same_on_both(
    pg_url: str, tmp_path: Path, literal: str, value: str
) -> None:
    """A statement with a literal (quotes, `?`, `%`, `:x` in it) and a placeholder reads the
    same on SQLite and PostgreSQL."""
    quoted = "'" + literal.replace("'", "''") + "'"
    query = f"SELECT {quoted} AS lit, ? AS val"

    async def both() -> list[tuple[object, ...]]:
        found = []
        for made in (SqliteStore(tmp_path / "lit.sqlite3"), PostgresStore(pg_url, pool_size=1)):
            await made.open()
            try:
                found.append(
                    tuple(await made.read(lambda c: c.execute(query, (value,)).fetchone()))
                )
            finally:
                await made.close()
        return found

    assert asyncio.run(both()) == [(literal, value), (literal, value)]


def test_a_fresh_database_gets_every_step_once(pg_cluster: Cluster) -> None:
    with (
        pg_cluster.database(template="template0") as url,
        psycopg.connect(url, autocommit=True) as raw,
    ):
        conn = PgConnection(raw)  # type: ignore[arg-type]
        assert pg_migrations.state(conn) == (0, 0)
        applied = pg_migrations.upgrade(conn)
        assert [step.version for step in applied] == list(range(1, migrations.latest() + 1))
        assert pg_migrations.upgrade(conn) == []
        assert pg_migrations.state(conn) == (migrations.latest(), 0)


def test_instances_starting_together_apply_each_step_once(pg_cluster: Cluster) -> None:
    """Four upgrades at once: the advisory lock makes them take turns; each step once."""
    with pg_cluster.database(template="template0") as url:
        results: list[list[int]] = []
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with psycopg.connect(url, autocommit=True) as raw:
                    applied = pg_migrations.upgrade(PgConnection(raw))  # type: ignore[arg-type]
                    results.append([step.version for step in applied])
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert sorted(v for found in results for v in found) == list(
            range(1, migrations.latest() + 1)
        )
        with psycopg.connect(url) as raw:
            rows = raw.execute("SELECT version FROM schema_versions ORDER BY version").fetchall()
        assert [row[0] for row in rows] == list(range(1, migrations.latest() + 1))


def _future_step(version: int, oldest_code: int) -> migrations.Migration:
    return migrations.portable(
        version,
        "a table from the future",
        f"CREATE TABLE future_{version} (x INTEGER);",
        oldest_code=oldest_code,
    )


async def test_older_code_runs_on_a_newer_schema_unless_it_says_too_old(pg_url: str) -> None:
    """Rolling upgrades: a newer release added a step; this one still starts, until a step
    says the oldest code it allows is newer than this code."""
    newer = migrations.latest() + 1
    with psycopg.connect(pg_url, autocommit=True) as raw:
        conn = PgConnection(raw)  # type: ignore[arg-type]
        steps = (*migrations.MIGRATIONS, _future_step(newer, 0))
        assert [s.version for s in pg_migrations.upgrade(conn, steps)] == [newer]
    store = PostgresStore(pg_url)
    await store.open()  # the older code on the newer schema
    assert store.migrated == []
    await store.close()

    with psycopg.connect(pg_url, autocommit=True) as raw:
        conn = PgConnection(raw)  # type: ignore[arg-type]
        steps = (*steps, _future_step(newer + 1, newer + 1))
        pg_migrations.upgrade(conn, steps)
        assert pg_migrations.state(conn) == (newer + 1, newer + 1)
    store = PostgresStore(pg_url)
    with pytest.raises(SchemaTooNewError, match=f"version {newer + 1} or newer"):
        await store.open()
    assert not store.is_open


def test_a_step_without_a_postgresql_body_is_refused(pg_url: str) -> None:
    sqlite_only = migrations.Migration(
        migrations.latest() + 1, "not ported", migrations.script("CREATE TABLE x (y);")
    )
    with psycopg.connect(pg_url, autocommit=True) as raw:
        conn = PgConnection(raw)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="no PostgreSQL body"):
            pg_migrations.upgrade(conn, (*migrations.MIGRATIONS, sqlite_only))
        assert pg_migrations.version(conn) == migrations.latest()


async def test_a_deadlock_is_broken_and_both_units_commit(pg_url: str) -> None:
    """Two units lock two rows in opposite orders: PostgreSQL aborts one, which runs again."""
    store = PostgresStore(pg_url)
    await store.open()
    await store.write(lambda c: c.execute("CREATE TABLE d (k INTEGER PRIMARY KEY, n INTEGER)"))
    await store.write(lambda c: c.execute("INSERT INTO d VALUES (1, 0), (2, 0)"))
    await store.write(lambda c: c.execute("SET deadlock_timeout = '50ms'"))
    both_locked = threading.Barrier(2, timeout=10)
    runs: list[int] = []

    def unit(first: int, second: int) -> Callable[[Connection], None]:
        def work(conn: Connection) -> None:
            runs.append(first)
            conn.execute("UPDATE d SET n = n + 1 WHERE k = ?", (first,))
            if len(runs) <= 2:  # only the first runs meet: a retry goes straight through
                both_locked.wait()
            conn.execute("UPDATE d SET n = n + 1 WHERE k = ?", (second,))

        return work

    await asyncio.gather(store.write(unit(1, 2)), store.write(unit(2, 1)))
    assert len(runs) == 3  # one of them ran twice
    rows = await store.read(
        lambda c: [tuple(r) for r in c.execute("SELECT k, n FROM d ORDER BY k")]
    )
    assert rows == [(1, 2), (2, 2)]
    await store.close()


async def test_a_lost_database_makes_writes_unavailable(pg_cluster: Cluster) -> None:
    with pg_cluster.database() as url:
        store = PostgresStore(url, pool_wait=0.5)
        await store.open()
        assert store.problem == ""
    # The database was dropped (its connections terminated) under the open store.
    with pytest.raises(StoreUnavailableError):
        await store.write(lambda c: c.execute("SELECT 1").fetchall())
    assert store.problem.startswith("the last commit failed")
    await store.close()
    assert store.problem == "the store is not open"


async def test_open_errors_say_why_and_never_the_password(pg_cluster: Cluster) -> None:
    wrong_port = f"postgresql://postgres:s3cret@127.0.0.1:{pg_cluster.port + 1}/x"
    with pytest.raises(PostgresOpenError) as caught:
        await PostgresStore(wrong_port).open()
    assert caught.value.transient
    assert "s3cret" not in str(caught.value)
    assert f"127.0.0.1:{pg_cluster.port + 1}/x" in str(caught.value)
    missing = pg_cluster.url("no_such_database")
    with pytest.raises(PostgresOpenError, match="does not exist") as caught:
        await PostgresStore(missing).open()
    assert not caught.value.transient


def test_where_drops_the_password() -> None:
    assert describe("postgresql://app:pw@db.example:5433/pager") == (
        "postgresql://app@db.example:5433/pager"
    )
    assert describe("postgresql:///pager?host=/run/postgresql") == (
        "postgresql:///run/postgresql/pager"
    )


async def test_a_notify_wakes_a_listener_on_another_store(pg_url: str) -> None:
    sender, listener = PostgresStore(pg_url), PostgresStore(pg_url)
    await sender.open()
    await listener.open()
    stream = listener.notifications("jobs", "timers")
    first = asyncio.ensure_future(anext(stream))
    # LISTEN is in place once the stream's connection has been set up: poll for it.
    for _ in range(200):
        await sender.notify("timers", "due")
        done, _ = await asyncio.wait({first}, timeout=0.05)
        if done:
            break
    got = first.result()
    assert (got.channel, got.payload) == ("timers", "due")
    await stream.aclose()
    await sender.close()
    await listener.close()


async def test_notifications_on_sqlite_reach_listeners_in_the_process(
    store_factory: Callable[[], Store], backend: tuple[Dialect, str]
) -> None:
    """The same interface on both backends: a listener gets what is sent on its channels."""
    store = store_factory()
    await store.open()
    stream = store.notifications("jobs")
    first = asyncio.ensure_future(anext(stream))
    for _ in range(200):
        await store.notify("other")
        await store.notify("jobs", "1")
        done, _ = await asyncio.wait({first}, timeout=0.05)
        if done:
            break
    assert first.result().channel == "jobs"
    assert first.result().payload == "1"
    await stream.aclose()
    await store.close()


async def test_pure_writes_share_commits_and_others_commit_alone(pg_url: str) -> None:
    """PostgreSQL's group commit: concurrent pure units are committed together."""
    store = PostgresStore(pg_url)
    await store.open()
    await store.write(lambda c: c.execute("CREATE TABLE g (x INTEGER NOT NULL)"))
    before = store.commits

    def insert(value: int) -> Callable[[Connection], int]:
        def work(conn: Connection) -> int:
            conn.execute("INSERT INTO g (x) VALUES (?)", (value,))
            return value

        return work

    results = await asyncio.gather(*(store.write(insert(n), pure=True) for n in range(200)))
    assert results == list(range(200))
    assert store.commits - before < 50
    before = store.commits
    await asyncio.gather(*(store.write(insert(n)) for n in range(200, 210)))
    assert store.commits - before == 10
    assert await store.read(lambda c: c.execute("SELECT count(*) FROM g").fetchone()[0]) == 210
    await store.close()


async def test_connections_lost_before_the_commit_are_replaced(pg_url: str) -> None:
    """The server ended every session (a restart, a failover, a firewall's idle timeout): the
    next units run on fresh connections instead of failing."""
    store = PostgresStore(pg_url)
    await store.open()
    await store.write(lambda c: c.execute("CREATE TABLE k (x INTEGER)"))
    # Hold several pooled connections, so that more than one is there to be killed.
    await asyncio.gather(
        *(store.read(lambda c: c.execute("SELECT pg_sleep(0.05)").fetchall()) for _ in range(4))
    )
    with psycopg.connect(pg_url, autocommit=True) as admin:
        killed = admin.execute(
            """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
               WHERE datname = current_database() AND pid <> pg_backend_pid()"""
        ).fetchone()
    assert killed is not None
    assert killed[0] >= 2
    await store.write(lambda c: c.execute("INSERT INTO k VALUES (1)"))
    await store.write(lambda c: c.execute("INSERT INTO k VALUES (2)"), pure=True)
    assert await store.read(lambda c: c.execute("SELECT count(*) FROM k").fetchone()[0]) == 2
    assert store.problem == ""
    await store.close()
