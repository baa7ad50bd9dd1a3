"""Replay memory in the store answers as the in-process one does, and a restart forgets nothing."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.plugin.replay import MemoryReplay
from bridge.store import SqliteStore, StoreReplay

_OPS = st.lists(
    st.tuples(
        st.sampled_from(["sig-a", "sig-b"]),
        st.sampled_from(["msg-1", "msg-2"]),
        st.sampled_from([1.0, 5.0]),
        st.sampled_from([0.0, 0.5, 3.0, 6.0]),  # time passing before the claim
        st.booleans(),  # restart the store before the claim
    ),
    max_size=20,
)


@settings(max_examples=40, deadline=None)
@given(_OPS)
def test_the_store_remembers_as_memory_does_across_restarts(
    ops: list[tuple[str, str, float, float, bool]],
) -> None:
    now = [1000.0]
    memory = MemoryReplay(lambda: now[0])

    async def run() -> list[tuple[bool, bool]]:
        answers: list[tuple[bool, bool]] = []
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "s.sqlite3"
            store = SqliteStore(path)
            await store.open()
            try:
                for key, value, window, elapsed, restart in ops:
                    now[0] += elapsed
                    if restart:
                        await store.close()
                        store = SqliteStore(path)
                        await store.open()
                    kept = StoreReplay(store, lambda: now[0])
                    answers.append(
                        (
                            await memory.claim(key, value, window),
                            await kept.claim(key, value, window),
                        )
                    )
            finally:
                await store.close()
        return answers

    for in_memory, in_store in asyncio.run(run()):
        assert in_memory == in_store


async def test_claims_mean_what_the_protocol_says() -> None:
    now = [0.0]
    memory = MemoryReplay(lambda: now[0])
    assert await memory.claim("sig", "msg-1", 10)
    assert await memory.claim("sig", "msg-1", 10)  # a redelivery of the same message
    assert not await memory.claim("sig", "msg-2", 10)  # the signature on another message
    assert await memory.claim("other", "msg-2", 10)
    now[0] = 10.0
    assert await memory.claim("sig", "msg-2", 10)  # the window is over
