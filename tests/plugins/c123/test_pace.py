"""The account's rate limit shared through the store: slots never closer than the rate allows."""

from __future__ import annotations

import asyncio
import sqlite3

from hypothesis import given, settings
from hypothesis import strategies as st

import bridge.store.migrations as migrations
from bridge.plugins.c123.pace import SharedLimiter, reserve
from bridge.store import Store


@settings(max_examples=40, deadline=None)
@given(
    rate=st.floats(min_value=0.5, max_value=50),
    burst=st.integers(min_value=1, max_value=10),
    calls=st.integers(min_value=1, max_value=40),
)
def test_reserved_slots_keep_to_the_rate_after_the_burst(
    rate: float, burst: int, calls: int
) -> None:
    """Whatever the rate and burst: the first `burst` calls go at once, each later one waits
    one more interval; all within one moment of the database's clock."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.row_factory = sqlite3.Row
    migrations.upgrade(conn)
    interval = 1.0 / rate
    waits = [reserve(conn, "acct", interval, (burst - 1) * interval) for _ in range(calls)]
    # Calls made within milliseconds of each other: compare with the ideal schedule.
    for index, wait in enumerate(waits):
        ideal = max(index - (burst - 1), 0) * interval
        assert abs(wait - ideal) < 0.05 + 1e-9, (index, wait, ideal)
    conn.close()


async def test_two_instances_share_one_rate(store: Store) -> None:
    """Two limiters (two instances) on one store: together they keep to the account's rate."""
    first = SharedLimiter(store, "acct", rate=20.0, burst=2)
    second = SharedLimiter(store, "acct", rate=20.0, burst=2)
    other = SharedLimiter(store, "another", rate=20.0, burst=2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(*(limiter.acquire() for limiter in [first, second] * 5))
    # 10 calls at 20/s with a burst of 2: the last goes 8 intervals (0.4 s) after the first.
    assert loop.time() - started >= 0.4 - 0.02
    before = loop.time()
    await other.acquire()  # another account has its own schedule
    assert loop.time() - before < 0.05
