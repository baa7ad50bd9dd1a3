"""The ledgers on each backend: de-duplication windows and first-seen keys, against a model."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bridge.store.ledger as ledger
from bridge.store import Store

T0 = 1_767_000_000.0

# (key, seconds since the previous call, window)
CALLS = st.lists(
    st.tuples(st.sampled_from("abc"), st.integers(0, 20), st.integers(1, 15)), max_size=25
)


async def _against_the_model(make: Callable[[], Store], calls: list[tuple[str, int, int]]) -> None:
    store = make()
    await store.open()
    try:
        await store.write(lambda c: c.execute("DELETE FROM dedupe"))
        await store.write(lambda c: c.execute("DELETE FROM seen_records"))
        expires: dict[str, float] = {}
        seen: set[str] = set()
        now = T0
        for key, step, window in calls:
            now += step
            want = key in expires and expires[key] > now
            if not want:
                expires[key] = now + window
            got = await store.write(
                lambda c, k=key, n=now, w=window: ledger.seen_within(c, k, n, w), pure=True
            )
            assert got == want, (key, now)
            first = await store.write(lambda c, k=key, n=now: ledger.first_time(c, k, n))
            assert first == (key not in seen)
            seen.add(key)
    finally:
        await store.close()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(calls=CALLS)
def test_seen_within_keeps_each_key_for_its_window(
    store_factory: Callable[[], Store], calls: list[tuple[str, int, int]]
) -> None:
    asyncio.run(_against_the_model(store_factory, calls))
