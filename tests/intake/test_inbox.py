"""The inbox on each backend: a delivery with a dedupe key is stored once within its window."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bridge.intake.inbox as inbox
from bridge.store import Store

T0 = 1_767_000_000.0
# Each example opens the store anew: fewer examples, no deadline.
AGAINST_THE_MODEL = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# (dedupe key, '' for none; seconds since the previous delivery; window)
DELIVERIES = st.lists(
    st.tuples(st.sampled_from(["", "a", "b"]), st.integers(0, 20), st.integers(1, 15)),
    max_size=25,
)


@contextlib.asynccontextmanager
async def _emptied(make: Callable[[], Store]) -> AsyncIterator[Store]:
    """An open store with no deliveries and no dedupe keys (examples share the backend)."""
    store = make()
    await store.open()
    try:
        await store.write(lambda c: c.execute("DELETE FROM dedupe"))
        await store.write(lambda c: c.execute("DELETE FROM inbox"))
        yield store
    finally:
        await store.close()


async def _against_the_model(
    make: Callable[[], Store], deliveries: list[tuple[str, int, int]]
) -> None:
    async with _emptied(make) as store:
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


@AGAINST_THE_MODEL
@given(deliveries=DELIVERIES)
def test_a_keyed_delivery_is_stored_once_within_its_window(
    store_factory: Callable[[], Store], deliveries: list[tuple[str, int, int]]
) -> None:
    asyncio.run(_against_the_model(store_factory, deliveries))


# Batches of deliveries received together: (seconds since the previous batch, its deliveries).
BATCHES = st.lists(
    st.tuples(
        st.integers(0, 20),
        st.lists(st.tuples(st.sampled_from(["", "a", "b", "c"]), st.integers(0, 15)), max_size=6),
    ),
    max_size=8,
)


async def _batches_against_the_model(
    make: Callable[[], Store], batches: list[tuple[int, list[tuple[str, int]]]]
) -> None:
    async with _emptied(make) as store:
        expires: dict[str, float] = {}
        stored: dict[int, bytes] = {}
        now, n = T0, 0
        for step, deliveries in batches:
            now += step
            rows, expected = [], []
            for key, window in deliveries:
                live = bool(key) and window > 0 and expires.get(key, 0.0) > now
                if key and window > 0 and not live:
                    expires[key] = now + window
                expected.append(not live)
                rows.append(
                    inbox.NewRow(
                        "am", f"body {n}".encode(), now, dedupe_key=key, dedupe_window=window
                    )
                )
                n += 1
            ids = await store.write(lambda c, r=rows: inbox.store_many(c, r), pure=True)
            assert [bool(row_id) for row_id in ids] == expected, (deliveries, now)
            for row, row_id in zip(rows, ids, strict=True):
                if row_id:
                    assert row_id not in stored
                    stored[row_id] = row.body
        # Each id names its own row's body: ids were matched to rows in order.
        assert await store.read(lambda c: inbox.bodies(c, list(stored))) == stored


@AGAINST_THE_MODEL
@given(batches=BATCHES)
def test_a_batch_stores_what_storing_one_at_a_time_would(
    store_factory: Callable[[], Store], batches: list[tuple[int, list[tuple[str, int]]]]
) -> None:
    """store_many against the model: a key live in the ledger, or earlier in the same batch,
    is a duplicate; every other delivery is stored under an id of its own."""
    asyncio.run(_batches_against_the_model(store_factory, batches))
