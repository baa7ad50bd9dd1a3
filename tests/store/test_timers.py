"""Durable timers on a real store: idempotent scheduling, claims, and firing exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.store import Connection, Store, timers

T0 = 1_767_000_000.0


async def opened(make: Callable[[], Store]) -> Store:
    """A store with a scratch table `fired` that stands for a timer's effect."""
    store = make()
    await store.open()
    await store.write(
        lambda conn: conn.execute(
            """CREATE TABLE IF NOT EXISTS fired (
                   seq INTEGER NOT NULL, timer INTEGER NOT NULL, key TEXT NOT NULL)"""
        )
    )
    return store


def record(conn: Connection, timer: timers.Timer) -> int:
    conn.execute(
        "INSERT INTO fired (seq, timer, key) SELECT count(*), ?, ? FROM fired",
        (timer.id, timer.key),
    )
    return timer.id


def fired_ids(conn: Connection) -> list[int]:
    return [row["timer"] for row in conn.execute("SELECT timer FROM fired ORDER BY seq")]


async def test_schedule_is_idempotent_per_kind_and_key(store_factory: Callable[[], Store]) -> None:
    store = await opened(store_factory)
    first = await store.write(lambda c: timers.schedule(c, "step", "7", T0 + 60, T0, {"i": 1}))
    again = await store.write(lambda c: timers.schedule(c, "step", "7", T0 + 5, T0, {"i": 2}))
    other = await store.write(lambda c: timers.schedule(c, "report", "7", T0 + 5, T0))
    assert again == first
    assert again.payload == {"i": 1}
    assert again.due_at == T0 + 60
    assert other.id != first.id
    replaced = await store.write(
        lambda c: timers.schedule(c, "step", "7", T0 + 5, T0, {"i": 2}, replace=True)
    )
    assert replaced.id != first.id
    assert replaced.payload == {"i": 2}
    assert await store.read(lambda c: timers.next_due(c)) == T0 + 5
    # The copy taken before the replacement no longer fires; the new one does.
    assert not await store.write(lambda c: timers.fire(c, first))
    assert await store.write(lambda c: timers.fire(c, replaced))
    assert await store.write(lambda c: timers.cancel(c, "report", "7"))
    assert not await store.write(lambda c: timers.cancel(c, "report", "7"))
    assert await store.read(lambda c: timers.next_due(c)) is None
    await store.close()


async def test_due_takes_oldest_first_within_the_limit(store_factory: Callable[[], Store]) -> None:
    store = await opened(store_factory)

    def plan(conn: Connection) -> None:
        for index, delay in enumerate([30, 10, 20, 90]):
            timers.schedule(conn, "t", str(index), T0 + delay, T0)

    await store.write(plan)
    taken = await store.write(lambda c: timers.due(c, T0 + 30, 2))
    assert [t.key for t in taken] == ["1", "2"]
    fired = await store.write(lambda c: timers.fire_due(c, T0 + 30, 10, record))
    assert len(fired) == 3  # the two taken (no owner: the same caller) and the third
    assert await store.read(lambda c: timers.next_due(c)) == T0 + 90
    await store.close()


async def test_a_claim_holds_other_owners_off_until_its_lease_ends(
    store_factory: Callable[[], Store],
) -> None:
    store = await opened(store_factory)
    await store.write(lambda c: timers.schedule(c, "t", "a", T0, T0))
    mine = await store.write(lambda c: timers.due(c, T0, 10, owner="one", lease=30))
    assert len(mine) == 1
    assert await store.write(lambda c: timers.due(c, T0 + 1, 10, owner="two", lease=30)) == []
    # Sleeping until the lease ends, not until the long-passed due time.
    assert await store.read(lambda c: timers.next_due(c)) == T0 + 30
    theirs = await store.write(lambda c: timers.due(c, T0 + 30, 10, owner="two", lease=30))
    assert theirs == mine
    assert await store.write(lambda c: timers.fire(c, theirs[0]))
    assert not await store.write(lambda c: timers.fire(c, mine[0]))  # the first owner was late
    await store.close()


async def test_a_crash_before_the_commit_fires_again_after_it_never(
    store_factory: Callable[[], Store],
) -> None:
    store = await opened(store_factory)
    await store.write(lambda c: timers.schedule(c, "t", "a", T0, T0))

    def crashing(conn: Connection) -> None:
        timers.fire_due(conn, T0, 10, record)
        raise RuntimeError("power cut before the commit")

    with pytest.raises(RuntimeError):
        await store.write(crashing)
    await store.close()
    store = await opened(store_factory)  # the restart
    assert await store.read(fired_ids) == []
    first = await store.write(lambda c: timers.fire_due(c, T0 + 1, 10, record))
    assert len(first) == 1
    await store.close()
    store = await opened(store_factory)
    assert await store.write(lambda c: timers.fire_due(c, T0 + 2, 10, record)) == []
    assert await store.read(fired_ids) == first
    await store.close()


KEYS = st.sampled_from("abc")
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("schedule"), KEYS, st.integers(0, 50)),
        st.tuples(st.just("cancel"), KEYS),
        st.tuples(st.just("advance"), st.integers(1, 30)),
        st.tuples(st.just("fire"), st.booleans(), st.integers(1, 3)),
        st.tuples(st.just("restart")),
    ),
    max_size=30,
)


async def _interleave(make: Callable[[], Store], operations: list[tuple[object, ...]]) -> None:
    store = await opened(make)
    # A fresh start for each example (PostgreSQL keeps its database across them).
    await store.write(lambda c: c.execute("DELETE FROM timers"))
    await store.write(lambda c: c.execute("DELETE FROM fired"))
    now = T0
    pending: dict[str, tuple[int, float]] = {}  # key -> (timer id, due)
    expected: list[int] = []  # timer ids that must have fired, in firing order
    cancelled: set[int] = set()

    for operation in operations:
        match operation:
            case ("schedule", str(key), int(delay)):
                at = now
                timer = await store.write(
                    lambda c, k=key, d=delay, n=at: timers.schedule(c, "t", k, n + d, n)
                )
                if key in pending:
                    assert timer.id == pending[key][0]
                else:
                    pending[key] = (timer.id, timer.due_at)
            case ("cancel", str(key)):
                dropped = await store.write(lambda c, k=key: timers.cancel(c, "t", k))
                assert dropped == (key in pending)
                if key in pending:
                    cancelled.add(pending.pop(key)[0])
            case ("advance", int(seconds)):
                now += seconds
            case ("fire", bool(crash), int(limit)):
                at = now

                def work(
                    conn: Connection, n: float = at, lim: int = limit, boom: bool = crash
                ) -> list[int]:
                    ids = timers.fire_due(conn, n, lim, record)
                    if boom:
                        raise RuntimeError("crash before the commit")
                    return ids

                if crash:
                    with pytest.raises(RuntimeError):
                        await store.write(work)
                    continue
                ids = await store.write(work)
                want = sorted((due, tid) for tid, due in pending.values() if due <= now)[:limit]
                assert ids == [tid for _, tid in want]
                expected.extend(ids)
                pending = {k: v for k, v in pending.items() if v[0] not in ids}
            case ("restart",):
                await store.close()
                store = await opened(make)
    # Everything left fires once time has run far enough on.
    rest = await store.write(lambda c: timers.fire_due(c, now + 10_000, 100, record))
    expected.extend(rest)
    assert sorted(rest) == sorted(tid for tid, _ in pending.values())
    fired = await store.read(fired_ids)
    assert fired == expected
    assert len(set(fired)) == len(fired)  # nothing twice
    assert not set(fired) & cancelled  # nothing cancelled
    assert await store.read(lambda c: timers.next_due(c)) is None
    await store.close()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(OPERATIONS)
def test_any_interleaving_fires_each_timer_exactly_once_unless_cancelled(
    store_factory: Callable[[], Store], operations: list[tuple[object, ...]]
) -> None:
    asyncio.run(_interleave(store_factory, operations))
