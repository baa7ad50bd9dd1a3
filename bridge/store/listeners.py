"""Notifications within one process: what a store shared by no other process sends itself."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from bridge.store.base import Notification

# Notifications kept for a listener that has not read them yet (more are dropped).
NOTIFY_BACKLOG = 64


class Listeners:
    """Fan-out of `notify` to the `notifications()` iterators open in this process."""

    def __init__(self) -> None:
        self._queues: list[tuple[frozenset[str], asyncio.Queue[Notification]]] = []

    def notify(self, channel: str, payload: str = "") -> None:
        for channels, queue in self._queues:
            if channel in channels:
                # A wake-up is a hint: a listener with NOTIFY_BACKLOG waiting needs no more.
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(Notification(channel, payload))

    async def notifications(self, *channels: str) -> AsyncIterator[Notification]:
        entry: tuple[frozenset[str], asyncio.Queue[Notification]] = (
            frozenset(channels),
            asyncio.Queue(NOTIFY_BACKLOG),
        )
        self._queues.append(entry)
        try:
            while True:
                yield await entry[1].get()
        finally:
            self._queues.remove(entry)
