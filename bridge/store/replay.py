"""Replay memory kept in the store, so a restart or a reload forgets no claimed signature."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

import bridge.store.ledger as ledger
from bridge.store.base import Store


class StoreReplay:
    """`ReplayMemory` on the store's `replay` table; retention drops claims past their window.

    Raises StoreUnavailableError when the claim cannot be committed (the input answers 503).
    """

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    async def claim(self, key: str, value: str, window: float) -> bool:
        return await self._store.write(
            partial(ledger.claim, key=key, value=value, now=self._clock(), window=window),
            pure=True,
        )
