"""Token buckets: the simulator refuses past one, the client waits for one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class TokenBucket:
    """Allows `rate` calls a second on average and bursts of up to `burst` calls."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.updated = now

    def _refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        self._refill(now)
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def wait_time(self, now: float) -> float:
        """Seconds until a token will be there."""
        self._refill(now)
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate


class Limiter:
    """Waits until a call may go, so a burst is spread out instead of refused."""

    def __init__(
        self, rate: float, burst: int = 1, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._bucket = TokenBucket(rate, burst, monotonic())
        self._monotonic = monotonic
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:  # first come, first served
            while not self._bucket.take(self._monotonic()):  # noqa: ASYNC110
                # Nothing to wait on but time itself: sleep exactly until a token is due.
                await asyncio.sleep(self._bucket.wait_time(self._monotonic()))
