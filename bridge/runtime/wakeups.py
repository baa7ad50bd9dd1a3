"""Waking the instance that can act, across instances on one database (LISTEN/NOTIFY).

A delivery stored by one instance must wake the processor leader, which may be another; jobs
the leader queued must wake every instance's senders. Each side keeps polling as it always did
(the processor every second, a sender at its next due job), so a NOTIFY lost with a dropped
connection only costs that poll's delay. Notices are coalesced: a burst of webhooks costs one
NOTIFY per channel per round, not one per request.

A third channel tells what people look at: something they would see changed (a batch
processed, a call's outcomes recorded, a console action), so open console pages on every
instance refresh; it is coalesced too, and sent at most every CHANGES_EVERY (a busy instance
would otherwise add a NOTIFY per round for pages that refresh no faster).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AsyncExitStack

from bridge.runtime.supervisor import Supervisor
from bridge.store import Dialect, Store

INBOX = "smsbridge_inbox"  # deliveries (or polled records) wait for the processor
JOBS = "smsbridge_jobs"  # jobs are due for the outputs named in the payload
CHANGES = "smsbridge_changes"  # something the console shows changed (no payload)
# A round collects what came within this before it notifies.
ROUND = 0.01
# People need no more than a few refreshes a second: CHANGES goes out at most this often.
CHANGES_EVERY = 0.25
SEND_TASK, LISTEN_TASK = "wakeups-send", "wakeups-listen"


async def announce(store: Store, outputs: Iterable[str]) -> None:
    """From a process that is no daemon (the command line, after a change it committed): wake
    the daemons' senders for `outputs` and refresh their open console pages. Only PostgreSQL
    needs it: daemons on a SQLite file see such changes at their next look at the queue."""
    if store.dialect is not Dialect.POSTGRESQL:
        return
    await store.notify(JOBS, ",".join(sorted(outputs)))
    await store.notify(CHANGES)


def start(
    store: Store,
    supervisor: Supervisor,
    stack: AsyncExitStack,
    *,
    inbox: Callable[[], None],
    jobs: Callable[[set[str]], None],
    stop: Callable[[list[str]], Awaitable[None]],
) -> Wakeups | None:
    """Send and hear wake-ups, supervised, on a database other processes share (None: SQLite,
    where this process is the only one and wakes its own workers directly)."""
    if store.dialect is not Dialect.POSTGRESQL:
        return None
    wakeups = Wakeups(store, inbox=inbox, jobs=jobs)
    supervisor.start(SEND_TASK, wakeups.send)
    supervisor.start(LISTEN_TASK, wakeups.listen)
    stack.push_async_callback(stop, [LISTEN_TASK, SEND_TASK])
    return wakeups


class Wakeups:
    """Sends coalesced NOTIFYs for this instance's news; hands others' news to the waiters."""

    def __init__(
        self, store: Store, *, inbox: Callable[[], None], jobs: Callable[[set[str]], None]
    ):
        self.store = store
        self.on_inbox = inbox
        self.on_jobs = jobs
        self._pending: dict[str, set[str]] = {}
        self._news = asyncio.Event()
        self._watchers: list[Callable[[], None]] = []
        self._changes_due = 0.0  # loop time before which CHANGES waits (it went out recently)
        self._later: asyncio.TimerHandle | None = None
        self.sent = 0  # NOTIFYs sent, and heard (this instance's own included), for tests
        self.heard = 0

    def inbox(self) -> None:
        """A delivery was stored here: the processor leader (wherever it is) should look."""
        self._post(INBOX, ())

    def jobs(self, outputs: Iterable[str]) -> None:
        """Jobs of these outputs were queued here: every instance's senders should look."""
        self._post(JOBS, outputs)

    def changed(self) -> None:
        """Something people see changed here: open console pages everywhere should refresh."""
        self._post(CHANGES, ())

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` on each change heard (any instance's); returns the unsubscribe."""
        self._watchers.append(callback)
        return lambda: self._watchers.remove(callback)

    def _post(self, channel: str, items: Iterable[str]) -> None:
        self._pending.setdefault(channel, set()).update(items)
        self._news.set()

    async def send(self) -> None:
        """Send what was posted, a round at a time, until cancelled."""
        while True:
            await self._news.wait()
            await asyncio.sleep(ROUND)
            self._news.clear()
            pending, self._pending = self._pending, {}
            self._pace_changes(pending)
            for channel, items in pending.items():
                await self.store.notify(channel, ",".join(sorted(items)))
                self.sent += 1

    def _pace_changes(self, pending: dict[str, set[str]]) -> None:
        """Keep CHANGES for a later round when one went out less than CHANGES_EVERY ago."""
        if CHANGES not in pending:
            return
        loop = asyncio.get_running_loop()
        if loop.time() >= self._changes_due:
            self._changes_due = loop.time() + CHANGES_EVERY
            return
        self._pending[CHANGES] = pending.pop(CHANGES)
        if self._later is None or self._later.cancelled() or self._later.when() <= loop.time():
            self._later = loop.call_at(self._changes_due, self._news.set)

    async def listen(self) -> None:
        """Hand NOTIFYs on to the waiters until cancelled (a lost connection raises)."""
        async for notice in self.store.notifications(INBOX, JOBS, CHANGES):
            self.heard += 1
            if notice.channel == INBOX:
                self.on_inbox()
            elif notice.channel == CHANGES:
                for watcher in list(self._watchers):
                    watcher()
            else:
                self.on_jobs({name for name in notice.payload.split(",") if name})
