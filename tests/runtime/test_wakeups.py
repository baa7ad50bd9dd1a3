"""Wake-ups across instances: news of changes for people's pages is paced, and the last of a
burst is never lost (on both backends)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools

from bridge.runtime.wakeups import CHANGES, CHANGES_EVERY, Wakeups
from bridge.store import Store


async def test_changes_are_paced_and_the_last_of_a_burst_goes_out(store: Store) -> None:
    heard: list[float] = []
    watched: list[int] = []
    wakeups = Wakeups(store, inbox=lambda: None, jobs=lambda outputs: None)
    unwatch = wakeups.watch(lambda: watched.append(1))
    loop = asyncio.get_running_loop()

    async def listen() -> None:
        async for _ in store.notifications(CHANGES):
            heard.append(loop.time())

    tasks = [asyncio.create_task(listen()), asyncio.create_task(wakeups.send())]
    heard_by_wakeups = asyncio.create_task(wakeups.listen())
    try:
        await asyncio.sleep(0.2)  # both listeners are listening
        started = loop.time()
        while loop.time() - started < 1.0:  # a busy second: a change every 5 ms
            wakeups.changed()
            await asyncio.sleep(0.005)
        ended = loop.time()
        deadline = ended + 5
        while not heard or heard[-1] < ended:  # the burst's last change is told too
            assert loop.time() < deadline, heard
            await asyncio.sleep(0.01)
        await asyncio.sleep(2 * CHANGES_EVERY)
        assert 2 <= len(heard) <= 1.0 / CHANGES_EVERY + 2, heard
        gaps = [b - a for a, b in itertools.pairwise(heard)]
        assert min(gaps) >= CHANGES_EVERY * 0.8, gaps
        assert len(watched) == len(heard)  # the daemon's watchers heard each one
        unwatch()
        wakeups.changed()
        await asyncio.sleep(3 * CHANGES_EVERY)
        assert len(watched) == len(heard) - 1  # unsubscribed: not called for the last
    finally:
        for task in (*tasks, heard_by_wakeups):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
