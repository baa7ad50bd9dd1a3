"""The inbox on each backend: a delivery with a dedupe key is stored once within its window."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bridge.intake.inbox as inbox
from bridge.store import Store

T0 = 1_767_000_000.0

# (dedupe key, '' for none; seconds since the previous delivery; window)
DELIVERIES = st.lists(
    st.tuples(st.sampled_from(["", "a", "b"]), st.integers(0, 20), st.integers(1, 15)),
    max_size=25,
)


async def _against_the_model(
    make: Callable[[], Store], deliveries: list[tuple[str, int, int]]
) -> None:
    store = make()
    await store.open()
    try:
        await store.write(lambda c: c.execute("DELETE FROM dedupe"))
        await store.write(lambda c: c.execute("DELETE FROM inbox"))
        expires: dict[str, float] = {}
        stored: dict[int, bytes] = {}
        now = T0
        for n, (key, step, window) in enumerate(deliveries):
            now += step
            duplicate = bool(key) and key in expires and expires[key] > now
            if key and not duplicate:
                expires[key] = now + window
            body = f"body {n}".encode()
            row_id = await store.write(
                lambda c, k=key, b=body, t=now, w=window: inbox.store(
                    c, "am", b, t, dedupe_key=k, dedupe_window=w
                ),
                pure=True,
            )
            assert (row_id == 0) == duplicate, (key, now)
            if row_id:
                assert row_id not in stored
                stored[row_id] = body
        rows = await store.read(lambda c: inbox.unprocessed(c, 0, 100))
        assert [row.id for row in rows] == sorted(stored)
        assert await store.read(lambda c: inbox.bodies(c, list(stored))) == stored
    finally:
        await store.close()


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(deliveries=DELIVERIES)
def test_a_keyed_delivery_is_stored_once_within_its_window(
    store_factory: Callable[[], Store], deliveries: list[tuple[str, int, int]]
) -> None:
    asyncio.run(_against_the_model(store_factory, deliveries))
