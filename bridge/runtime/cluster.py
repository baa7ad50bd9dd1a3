"""This daemon among the instances on one database: who it is, its heartbeat, its leases.

Every instance accepts webhooks and sends from the outbox (claims skip each other's rows).
What must happen in one place runs only where its lease is held: the account's poller (reads
are destructive) and the processor with its timers (see `leadership` for why a leader).
On SQLite the one daemon the file admits holds every lease from its start.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from bridge.metrics import Metrics
from bridge.plugins.c123.client import Pacer, burst
from bridge.plugins.c123.config import C123Config
from bridge.plugins.c123.pace import SharedLimiter
from bridge.runtime.instances import Heartbeat, Identity
from bridge.runtime.leadership import (
    PROCESSOR_LEASE,
    LeaseKeeper,
    poller_lease,
    while_leading,
)
from bridge.runtime.supervisor import Run, Supervisor
from bridge.store import Dialect, Store

# A processor leader that stops is replaced within this (and a quarter of it).
PROCESSOR_TTL = 10.0
# The poll lease lasts one poll interval (a new poller within 1.25 intervals of the old one's
# death, inside the 2 the design asks), but not less than this.
MIN_POLL_TTL = 0.5

HEARTBEAT_TASK = "heartbeat"
POLL_LEASE_TASK = "lease-poller"
PROCESSOR_LEASE_TASK = "lease-processor"
TASKS = [HEARTBEAT_TASK, POLL_LEASE_TASK, PROCESSOR_LEASE_TASK]


def shared_limiter(store: Store, gateway: C123Config) -> Pacer | None:
    """The account's rate limit kept in the database, where several instances share it (on
    SQLite the client keeps its own: no other process calls)."""
    rate = gateway.rate_limit
    if store.dialect is Dialect.SQLITE or not rate:
        return None
    return SharedLimiter(store, gateway.account, rate, burst(rate))


class Cluster:
    """The instance's identity, heartbeat and the two leases it may hold."""

    def __init__(
        self,
        store: Store,
        *,
        account: str,
        poll_every: float,
        listen: str,
        log: Any,
        take_over: Callable[[list[str]], Awaitable[int]],
        on_poll_gained: Callable[[], None] = lambda: None,
        identity: Identity | None = None,
    ) -> None:
        self.identity = identity or Identity.new()
        self.log = log
        self._on_poll_gained = on_poll_gained
        holder = self.identity.id
        self.poll = LeaseKeeper(
            store,
            poller_lease(account),
            holder,
            max(poll_every, MIN_POLL_TTL),
            log=log,
            on_gain=self._poll_gained,
        )
        self.processor = LeaseKeeper(store, PROCESSOR_LEASE, holder, PROCESSOR_TTL, log=log)
        self.heartbeat = Heartbeat(store, self.identity, listen, log=log, take_over=take_over)
        self._fenced_reported = 0

    @property
    def keepers(self) -> tuple[LeaseKeeper, ...]:
        return (self.poll, self.processor)

    async def join(self) -> None:
        """Register, and try each lease once: a lone instance leads from its first moment."""
        await self.heartbeat.register()
        for keeper in self.keepers:
            await keeper.renew()
        self.log.info(
            "instance_joined",
            instance=self.identity.id,
            poller=self.poll.held,
            processor=self.processor.held,
        )

    async def serving(self, listen: str) -> None:
        """Record where this instance serves, once it knows (a port 0 was given one)."""
        self.heartbeat.listen = listen
        await self.heartbeat.register()

    def start(self, supervisor: Supervisor) -> None:
        supervisor.start(HEARTBEAT_TASK, self.heartbeat.run)
        supervisor.start(POLL_LEASE_TASK, self.poll.run)
        supervisor.start(PROCESSOR_LEASE_TASK, self.processor.run)

    def leading(self, work: Run) -> Run:
        """`work` run only while this instance is the processor leader."""
        return partial(while_leading, self.processor, work)

    async def leave(self) -> None:
        """A clean stop: hand the leases on at once and say this instance claims nothing."""
        for keeper in self.keepers:
            await keeper.release()
        try:
            await self.heartbeat.stopped()
        except Exception:  # the store is going away: the heartbeat runs out by itself
            self.log.warning("instance_stop_unrecorded", exc_info=True)

    def gauges(self, metrics: Metrics, fenced: int) -> None:
        """Refresh the instance's metrics; `fenced` is the poller's count of refused answers."""
        metrics.poll_answers_fenced.inc(fenced - self._fenced_reported)
        self._fenced_reported = fenced
        metrics.instance_info.labels(self.identity.id).set(1)
        for keeper in self.keepers:
            metrics.lease_held.labels(keeper.name).set(1 if keeper.held else 0)
            metrics.lease_age.labels(keeper.name).set(keeper.age())

    def _poll_gained(self) -> None:
        self._on_poll_gained()
