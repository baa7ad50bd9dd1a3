"""Live updates: a commit reaches every open page as an event; streams are bounded, and a
stopping daemon ends them rather than waiting for them."""

from __future__ import annotations

import asyncio

from bridge.runtime.daemon import Daemon
from bridge.store import ledger
from bridge.testing import DaemonFactory
from tests.console.conftest import base
from tests.console.helpers import PASSWORDS, client, config, login


async def _next_event(stream: asyncio.StreamReader | object) -> str:
    lines: list[str] = []
    reader = stream.content  # type: ignore[attr-defined]
    while True:
        line = (await reader.readline()).decode()
        if line == "":
            return "<closed>"
        if line == "\n" and lines:
            return "".join(lines)
        if line != "\n":
            lines.append(line)


async def test_a_commit_is_told_to_open_pages_and_streams_are_bounded(
    smsbridge_daemon: DaemonFactory,
) -> None:
    daemon = await smsbridge_daemon(config(live_clients=2))
    async with client() as http:
        assert await login(http, base(daemon), "victor", PASSWORDS["victor"]) == 303
        first = await http.get(f"{base(daemon)}/events")
        second = await http.get(f"{base(daemon)}/events")
        assert first.headers["Content-Type"] == "text/event-stream"
        assert "retry: 3000" in await _next_event(first)
        await _next_event(second)
        async with http.get(f"{base(daemon)}/events") as third:
            assert third.status == 429
            assert third.headers["Retry-After"] == "30"
        await daemon.store.write(lambda conn: ledger.put_setting(conn, "test.touch", "1"))
        for stream in (first, second):
            event = await asyncio.wait_for(_next_event(stream), 10)
            assert event.startswith("event: changed")
        second.close()
        # The stopping daemon ends the stream that is still open: the read sees its end.
        stopping = asyncio.create_task(daemon.stop())
        assert await asyncio.wait_for(_next_event(first), 10) == "<closed>"
        await asyncio.wait_for(stopping, 20)
        first.close()


async def test_no_console_without_its_section(smsbridge_daemon: DaemonFactory) -> None:
    daemon: Daemon = await smsbridge_daemon("rules: []\n")
    assert daemon.console is None
