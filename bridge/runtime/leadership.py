"""Holding a named lease from a running daemon, and running work only while it is held.

Two leases matter: one per gateway account (its poller: reads are destructive, so exactly one
instance may read) and one per database for the processor. The processor is a leader, not a
set of per-key locks: its decisions (opening an incident, caps, repeat intervals, the daily
budget, storm groups) each read state that many keys share, so per-key locks would have to
cover every key a rule may read and could not be shown to decide as one processor does.
One fenced leader decides exactly as one instance does, and its failover costs one lease
period; ingest and sending, which scale, run on every instance.

A lease is renewed every quarter of its period. The holder also keeps a local deadline (the
moment it asked, plus the period, on its own monotonic clock): it never starts work it could
not finish before that, and every write that depends on the lease checks the token in its own
transaction (`fence`), so a holder that was paused or cut off never commits after a takeover.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from bridge.store import Connection, Lease, LeaseLostError, Store, leases

Hook = Callable[[], Awaitable[None] | None]
Monotonic = Callable[[], float]

# Names of the leases, as `smsbridge status` shows them.
PROCESSOR_LEASE = "processor"


def poller_lease(account: str) -> str:
    return f"poller:{account}"


class LeaseKeeper:
    """Takes and renews one lease for this instance; knows whether (and how long) it holds it."""

    def __init__(
        self,
        store: Store,
        name: str,
        holder: str,
        ttl: float,
        *,
        log: Any,
        monotonic: Monotonic = time.monotonic,
        on_gain: Hook | None = None,
    ) -> None:
        self.store = store
        self.name = name
        self.holder = holder
        self.ttl = ttl
        self.log = log
        self.monotonic = monotonic
        self.on_gain = on_gain
        self.lease: Lease | None = None  # as of the last renewal that succeeded
        self.gains = 0  # times this instance took the lease over
        self._deadline = 0.0  # monotonic: the lease is surely ours until then
        self._changed = asyncio.Event()

    # --- state -------------------------------------------------------------------------------

    @property
    def token(self) -> int | None:
        lease = self.lease
        return lease.token if lease is not None and self.held else None

    @property
    def held(self) -> bool:
        return self.lease is not None and self.remaining() > 0

    def remaining(self) -> float:
        """Seconds the lease is surely still ours (0 when it is not)."""
        if self.lease is None:
            return 0.0
        return max(self._deadline - self.monotonic(), 0.0)

    def age(self) -> float:
        """Seconds since this instance took the lease (0 when it does not hold it)."""
        lease = self.lease
        if lease is None or not self.held:
            return 0.0
        return max(lease.renewed_at - lease.acquired_at, 0.0) + (
            self.monotonic() - (self._deadline - self.ttl)
        )

    def fence(self, conn: Connection) -> None:
        """Raise LeaseLostError unless this instance still holds the lease (in `conn`'s
        transaction, so the check and the writes after it commit together)."""
        lease = self.lease
        if lease is None or not self.held:
            raise LeaseLostError(f"the lease {self.name!r} is not held here")
        leases.fence(conn, self.name, self.holder, lease.token)

    async def changed(self) -> None:
        """Wait until the lease is gained or lost."""
        await self._changed.wait()

    # --- taking and renewing -----------------------------------------------------------------

    async def renew(self) -> bool:
        """Take or renew the lease once; True when this instance holds it afterwards."""
        asked = self.monotonic()
        had = self.token
        try:
            lease = await self.store.write(
                partial(leases.acquire, name=self.name, holder=self.holder, ttl=self.ttl)
            )
        except Exception:
            self.log.warning("lease_renew_failed", lease=self.name, exc_info=True)
            lease = self.lease if self.held else None
        else:
            if lease is not None:
                self._deadline = asked + self.ttl
        previous, self.lease = self.lease, lease
        now_held = self.token
        if now_held != had:
            self._signal()
            if now_held is not None:
                self.gains += 1
                self.log.info("lease_gained", lease=self.name, token=now_held)
                if self.on_gain is not None:
                    result = self.on_gain()
                    if result is not None:
                        await result
            elif previous is not None:
                self.log.warning("lease_lost", lease=self.name, token=had)
        return now_held is not None

    async def run(self) -> None:
        """Renew every quarter period until cancelled; a lost deadline is noticed on time."""
        while True:
            await self.renew()
            wait = self.ttl / 4
            if self.held:
                # Wake at the local deadline too, so loss is signalled even if a renewal hangs.
                wait = min(wait, self.remaining())
            await asyncio.sleep(max(wait, 0.01))

    async def release(self) -> None:
        """Give the lease up (a clean stop): the next holder need not wait the period out."""
        lease, self.lease = self.lease, None
        self._signal()
        if lease is None:
            return
        with contextlib.suppress(Exception):
            await self.store.write(
                partial(leases.release, name=self.name, holder=self.holder, token=lease.token)
            )
            self.log.info("lease_released", lease=self.name, token=lease.token)

    def _signal(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()


async def while_leading(keeper: LeaseKeeper, work: Callable[[], Awaitable[None]]) -> None:
    """Run `work` whenever `keeper` holds its lease; cancel it as soon as the lease is lost.

    A write `work` makes after the loss fails its fence (LeaseLostError): that ends this round,
    and `work` starts again the next time the lease is held.
    """
    while True:
        while not keeper.held:
            await keeper.changed()
        task: asyncio.Future[None] = asyncio.ensure_future(work())
        try:
            while keeper.held and not task.done():
                changed = asyncio.ensure_future(keeper.changed())
                await asyncio.wait(
                    {task, changed},
                    timeout=max(keeper.remaining(), 0.01),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                changed.cancel()
        finally:
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, LeaseLostError):
                await task
        if task.done() and not task.cancelled() and task.exception() is None and keeper.held:
            return  # the work finished by itself
