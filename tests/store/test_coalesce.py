"""Coalescer on each backend: items queued during a write go as one unit, failing alone."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from bridge.plugin import StoreUnavailableError
from bridge.store import Coalescer, Connection, Store


class Doubler:
    """A unit that records the items of every call, refuses negative ones, and holds its first
    call (in the store's writer thread) until `release` is set."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, conn: Connection, items: Sequence[int]) -> list[int]:
        self.calls.append(list(items))
        if len(self.calls) == 1:
            self.started.set()
            self.release.wait(10)
        if any(item < 0 for item in items):
            raise ValueError("negative")
        conn.execute("SELECT 1").fetchall()
        return [2 * item for item in items]


async def _first_write_under_way(
    coalescer: Coalescer[int, int], unit: Doubler
) -> asyncio.Task[int]:
    first = asyncio.ensure_future(coalescer.write(1))
    assert await asyncio.to_thread(unit.started.wait, 10)
    return first


async def test_items_queued_during_a_write_go_together_in_order(store: Store) -> None:
    unit = Doubler()
    coalescer = Coalescer(store, unit)
    first = await _first_write_under_way(coalescer, unit)
    later = [asyncio.ensure_future(coalescer.write(n)) for n in range(10, 30)]
    await asyncio.sleep(0)
    unit.release.set()
    assert await first == 2
    assert [await task for task in later] == [2 * n for n in range(10, 30)]
    assert unit.calls == [[1], list(range(10, 30))]


async def test_items_of_one_turn_of_the_loop_go_together(store: Store) -> None:
    unit = Doubler()
    unit.release.set()
    coalescer = Coalescer(store, unit)
    assert await asyncio.gather(*(coalescer.write(n) for n in range(5))) == [0, 2, 4, 6, 8]
    assert unit.calls == [[0, 1, 2, 3, 4]]


async def test_a_failing_item_fails_alone(store: Store) -> None:
    unit = Doubler()
    coalescer = Coalescer(store, unit)
    first = await _first_write_under_way(coalescer, unit)
    later = [asyncio.ensure_future(coalescer.write(n)) for n in (2, -3, 4)]
    await asyncio.sleep(0)
    unit.release.set()
    assert await first == 2
    outcomes = await asyncio.gather(*later, return_exceptions=True)
    assert outcomes[0] == 4
    assert isinstance(outcomes[1], ValueError)
    assert outcomes[2] == 8
    # The batch of three failed as one, then each went alone (the store itself may run a
    # failing pure unit again in a savepoint of its own).
    assert unit.calls[:2] == [[1], [2, -3, 4]]
    assert all(call == [2, -3, 4] for call in unit.calls[1:] if len(call) > 1)
    assert {tuple(call) for call in unit.calls if len(call) == 1} == {(1,), (2,), (-3,), (4,)}


async def test_a_caller_that_goes_away_leaves_its_item_written(store: Store) -> None:
    unit = Doubler()
    coalescer = Coalescer(store, unit)
    first = await _first_write_under_way(coalescer, unit)
    leaving = asyncio.ensure_future(coalescer.write(5))
    staying = asyncio.ensure_future(coalescer.write(6))
    await asyncio.sleep(0)
    leaving.cancel()
    unit.release.set()
    assert (await first, await staying) == (2, 12)
    assert unit.calls == [[1], [5, 6]]  # 5 was written with 6 all the same


async def test_a_closed_store_fails_every_item_as_unavailable(store: Store) -> None:
    coalescer = Coalescer(store, Doubler())
    await store.close()
    outcomes = await asyncio.gather(*(coalescer.write(n) for n in range(3)), return_exceptions=True)
    assert all(isinstance(outcome, StoreUnavailableError) for outcome in outcomes)
    with pytest.raises(StoreUnavailableError):
        await coalescer.write(7)  # and the next writes find it closed too


async def test_a_unit_that_returns_too_few_results_fails_its_callers(store: Store) -> None:
    """A fault of the unit itself (not of one item) reaches every caller of the batch."""

    def short(conn: Connection, items: Sequence[int]) -> list[int]:
        return list(items[:-1]) if len(items) > 1 else list(items)

    coalescer = Coalescer(store, short)
    outcomes = await asyncio.gather(*(coalescer.write(n) for n in range(3)), return_exceptions=True)
    assert all(isinstance(outcome, ValueError) for outcome in outcomes)
    assert await coalescer.write(5) == 5  # and the next write is a batch of its own
