"""Live updates by server-sent events: one watcher notices commits, every open stream is told.

On PostgreSQL the watcher is the daemon's wake-ups: every instance announces what it changed
(coalesced), so a commit by any instance reaches the pages open on all of them. On SQLite one
daemon owns the file and the watcher asks it whether anything was committed since it last
looked (`PRAGMA data_version`), which also sees the command line's writes beside the daemon.

The streams are bounded (`console.live_clients`); past the bound a client is told to come back
later. Closing the hub ends every stream, so a stopping daemon is not held up by open pages.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from aiohttp import web

from bridge.console.context import Changes
from bridge.store import Connection, Store

HEARTBEAT = 15.0  # seconds between comments that keep idle proxies from closing a stream
RETRY_MS = 3000  # how soon a browser reconnects a stream that ended


def _data_version(conn: Connection) -> int:
    # Changes whenever another connection (the daemon's writer) commits: a cheap "anything new?".
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


class LiveHub:
    def __init__(
        self, store: Store, limit: int, interval: float = 1.0, changes: Changes | None = None
    ) -> None:
        self.store = store
        self.changes = changes
        self.limit = limit
        self.interval = interval
        self._clients: set[asyncio.Queue[str | None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._unwatch: Callable[[], None] = lambda: None
        self._news = asyncio.Event()  # a change was heard (PostgreSQL)

    @property
    def clients(self) -> int:
        return len(self._clients)

    def start(self) -> None:
        if self.changes is not None:
            self._unwatch = self.changes.watch(self._news.set)
            self._task = asyncio.create_task(self._relay(), name="console-live")
        else:
            self._task = asyncio.create_task(self._watch(), name="console-live")

    async def close(self) -> None:
        """End every stream and stop watching."""
        self._closing = True
        self._unwatch()
        self._unwatch = lambda: None
        for queue in self._clients:
            queue.put_nowait(None)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def publish(self, name: str) -> None:
        for queue in self._clients:
            if queue.qsize() < 8:  # a slow reader misses repeats of "changed", nothing else
                queue.put_nowait(name)

    async def _relay(self) -> None:
        # The first change is told at once; those heard within `interval` after it make one
        # more event, so a busy cluster costs a page one refresh a second, not one per commit.
        while True:
            await self._news.wait()
            self._news.clear()
            if self._clients:
                self.publish("changed")
            await asyncio.sleep(self.interval)

    async def _watch(self) -> None:
        last: int | None = None
        while True:
            version: int | None = last
            with contextlib.suppress(Exception):  # the store closing under us: stopping
                version = await self.store.read(_data_version)
            if last is not None and version != last and self._clients:
                self.publish("changed")
            last = version
            await asyncio.sleep(self.interval)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        if self._closing:
            raise web.HTTPServiceUnavailable(text="the console is stopping")
        if len(self._clients) >= self.limit:
            raise web.HTTPTooManyRequests(
                text="too many live pages open; close one", headers={"Retry-After": "30"}
            )
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._clients.add(queue)
        try:
            response = web.StreamResponse(
                headers={
                    "Content-Type": "text/event-stream",
                    "Cache-Control": "no-store",
                    "X-Accel-Buffering": "no",  # nginx: pass each event at once
                }
            )
            with contextlib.suppress(ConnectionError):  # the page went away: nothing to do
                await response.prepare(request)
                await self._send(response, queue)
            return response
        finally:
            self._clients.discard(queue)

    async def _send(self, response: web.StreamResponse, queue: asyncio.Queue[str | None]) -> None:
        await response.write(f"retry: {RETRY_MS}\n: connected\n\n".encode())
        while True:
            try:
                name = await asyncio.wait_for(queue.get(), HEARTBEAT)
            except TimeoutError:
                await response.write(b": ping\n\n")
                continue
            if name is None:
                return
            await response.write(f"event: {name}\ndata: {{}}\n\n".encode())
