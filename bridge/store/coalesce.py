"""Many small writes of one kind as one unit: the items queued while the last batch was written."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from bridge.plugin import StoreUnavailableError
from bridge.store.base import Store
from bridge.store.connection import Connection

I = TypeVar("I")  # noqa: E741 - an item, as R is a result
R = TypeVar("R")

# Items in one unit: a batch this big is written in a few milliseconds.
MOST = 512


class Coalescer(Generic[I, R]):
    """Writes items through `unit`, a pure unit of work over many items (one statement for many
    rows instead of one each), returning one result per item in their order.

    Items queued in one turn of the event loop are written together, and those that come while
    that write is under way together next: a batch is as large as the load makes it, and no item
    waits for a timer.
    When `unit` raises for a batch, each of its items is written again alone, so a failure stays
    its own; StoreUnavailableError fails the whole batch, as it would each item.
    """

    def __init__(
        self, store: Store, unit: Callable[[Connection, Sequence[I]], Sequence[R]]
    ) -> None:
        self._store = store
        self._unit = unit
        self._queued: list[tuple[I, asyncio.Future[R]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def write(self, item: I) -> R:
        """Write `item` with the others queued meanwhile; returns its result once committed."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queued.append((item, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_queued())
        return await future

    async def _write_queued(self) -> None:
        batch: list[tuple[I, asyncio.Future[R]]] = []
        try:
            while self._queued:
                batch, self._queued = self._queued[:MOST], self._queued[MOST:]
                await self._write_batch(batch)
                batch = []
        except BaseException as exc:
            # Cancelled at shutdown, or a fault of the unit's own (a result missing): whoever
            # waits is told, never left waiting. The exception reaches them, not the loop.
            left, self._queued = batch + self._queued, []
            for _, future in left:
                if future.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            self._writer = None

    async def _write_batch(self, batch: list[tuple[I, asyncio.Future[R]]]) -> None:
        items = [item for item, _ in batch]
        unit = self._unit
        try:
            results = await self._store.write(lambda conn: unit(conn, items), pure=True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if len(batch) == 1 or isinstance(exc, StoreUnavailableError):
                for _, future in batch:
                    _settle(future, exception=exc)
                return
            await asyncio.gather(*(self._write_alone(item, future) for item, future in batch))
            return
        if len(results) != len(batch):
            raise ValueError(f"{len(results)} results for a batch of {len(batch)} items")
        for (_, future), result in zip(batch, results, strict=True):
            _settle(future, result)

    async def _write_alone(self, item: I, future: asyncio.Future[R]) -> None:
        unit = self._unit
        try:
            result = await self._store.write(lambda conn: unit(conn, [item])[0], pure=True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            _settle(future, exception=exc)
        else:
            _settle(future, result)


def _settle(
    future: asyncio.Future[R], result: R | None = None, *, exception: BaseException | None = None
) -> None:
    if future.done():  # its request went away; the item is written all the same
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)  # type: ignore[arg-type]
