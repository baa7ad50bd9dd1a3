"""Replay memory: which signature or nonce an input already accepted, and with what."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol


class ReplayMemory(Protocol):
    """Remembers what a signed request's one-time part (a signature, a nonce) was used with.

    `claim(key, value, window)` returns False when `key` was already claimed with another
    `value` within its window (a captured signature carrying another message), True otherwise,
    and then remembers `key` -> `value` for `window` seconds. The daemon hands inputs one kept
    in the store, so the memory outlives a restart or a reload.
    """

    async def claim(self, key: str, value: str, window: float) -> bool: ...


class MemoryReplay:
    """Replay memory in this process only: for adapters built without a daemon (tests, tools)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._claims: dict[str, tuple[str, float]] = {}  # key -> (value, expires at)

    async def claim(self, key: str, value: str, window: float) -> bool:
        now = self._clock()
        # Only authenticated requests claim, so sweeping on each claim stays cheap.
        self._claims = {k: claim for k, claim in self._claims.items() if claim[1] > now}
        found = self._claims.get(key)
        if found is not None:
            return found[0] == value
        self._claims[key] = (value, now + window)
        return True
