"""Leases: one holder at a time, tokens that only grow, a fence that refuses an ex-holder."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bridge.store.migrations as migrations
from bridge.store import Connection, LeaseLostError, Store, instances, leases

LONG = 3600.0
GONE = 0.0  # a lease for no time at all: it has run out by the next statement


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(tmp_path / "s.sqlite3", isolation_level=None)
    connection.row_factory = sqlite3.Row
    migrations.upgrade(connection)
    yield connection
    connection.close()


async def test_one_holder_and_the_token_grows_only_on_a_takeover(store: Store) -> None:
    await store.write(_one_holder_and_the_token_grows_only_on_a_takeover)


def _one_holder_and_the_token_grows_only_on_a_takeover(conn: Connection) -> None:
    first = leases.acquire(conn, "poller:a", "one", LONG)
    assert first is not None
    assert (first.holder, first.token) == ("one", 1)
    assert leases.acquire(conn, "poller:a", "two", LONG) is None, "held by one"
    renewed = leases.acquire(conn, "poller:a", "one", LONG)
    assert renewed is not None
    assert renewed.token == 1, "a renewal keeps the token"
    assert renewed.acquired_at == first.acquired_at
    assert renewed.expires_at >= first.expires_at
    # Another lease name is another lease.
    other = leases.acquire(conn, "processor", "two", LONG)
    assert other is not None
    assert other.token == 1


async def test_an_expired_lease_passes_on_and_fences_its_old_holder(store: Store) -> None:
    await store.write(_an_expired_lease_passes_on_and_fences_its_old_holder)


def _an_expired_lease_passes_on_and_fences_its_old_holder(conn: Connection) -> None:
    assert leases.acquire(conn, "poller:a", "one", GONE) is not None
    taken = leases.acquire(conn, "poller:a", "two", LONG)
    assert taken is not None
    assert (taken.holder, taken.token) == ("two", 2)
    with pytest.raises(LeaseLostError, match="taken over"):
        leases.fence(conn, "poller:a", "one", 1)
    leases.fence(conn, "poller:a", "two", 2)  # the holder passes
    assert leases.acquire(conn, "poller:a", "one", LONG) is None, "two holds it now"


async def test_a_release_hands_the_lease_on_at_once(store: Store) -> None:
    await store.write(_a_release_hands_the_lease_on_at_once)


def _a_release_hands_the_lease_on_at_once(conn: Connection) -> None:
    assert leases.acquire(conn, "processor", "one", LONG) is not None
    assert leases.release(conn, "processor", "one", 1)
    assert not leases.release(conn, "processor", "one", 7), "not with a token it never had"
    taken = leases.acquire(conn, "processor", "two", LONG)
    assert taken is not None
    assert taken.token == 2


def test_the_clock_is_the_databases(conn: sqlite3.Connection) -> None:
    lease = leases.acquire(conn, "processor", "one", 30.0)
    assert lease is not None
    assert lease.expires_at - lease.renewed_at == pytest.approx(30.0)
    # Not the host's clock as Python reads it: the row says what SQLite's own clock said.
    sql_now = conn.execute("SELECT (julianday('now') - 2440587.5) * 86400.0").fetchone()[0]
    assert abs(sql_now - lease.renewed_at) < 5


steps = st.lists(
    st.tuples(
        st.sampled_from(["acquire", "release"]),
        st.sampled_from(["one", "two", "three"]),
        st.sampled_from([GONE, LONG]),
    ),
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(steps)
def test_tokens_never_go_back_and_a_holder_change_always_moves_them(
    tmp_path_factory: pytest.TempPathFactory, script: list[tuple[str, str, float]]
) -> None:
    """Whatever holders do, in any order: the token never decreases, a new holder always has a
    token no earlier holder had, and only the holder of the current token passes the fence."""
    path = tmp_path_factory.mktemp("leases") / "s.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    migrations.upgrade(conn)
    tokens: dict[int, str] = {}  # token -> the one holder that ever had it
    last = 0
    for op, holder, ttl in script:
        if op == "release":
            current = leases.get(conn, "l")
            if current is not None:
                leases.release(conn, "l", holder, current.token)
            continue
        lease = leases.acquire(conn, "l", holder, ttl)
        row = leases.get(conn, "l")
        assert row is not None
        assert row.token >= last
        last = row.token
        if lease is not None:
            assert tokens.setdefault(lease.token, holder) == holder
        for other, owner in tokens.items():
            if other != row.token or owner != row.holder:
                with pytest.raises(LeaseLostError):
                    leases.fence(conn, "l", owner, other)
    conn.close()


async def test_instances_beat_and_the_dead_are_found(store: Store) -> None:
    await store.write(_instances_beat_and_the_dead_are_found)


def _instances_beat_and_the_dead_are_found(conn: Connection) -> None:
    instances.register(conn, "a", "host", 1, "127.0.0.1:1", LONG)
    instances.register(conn, "b", "host", 2, "127.0.0.1:2", GONE)
    assert instances.dead(conn, keep="a") == ["b"]
    assert instances.dead(conn, keep="b") == []
    assert instances.beat(conn, "b", LONG)
    assert instances.dead(conn, keep="a") == []
    instances.stopped(conn, "a")
    assert instances.dead(conn, keep="b") == ["a"]
    listed = {row.id: row for row in instances.listing(conn)}
    assert listed["a"].stopped_at is not None
    assert not listed["a"].alive
    assert listed["b"].alive
    assert listed["b"].listen == "127.0.0.1:2"
    assert not instances.beat(conn, "nobody", LONG)
    assert instances.forget(conn, after=LONG) == 0, "stopped only now: kept for status"
    assert instances.forget(conn, after=-60) == 1, "a is past its heartbeat: forgotten"
    assert [row.id for row in instances.listing(conn)] == ["b"]
