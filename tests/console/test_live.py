"""Live updates: a commit reaches every open page as an event (on PostgreSQL, a commit by any
instance reaches the pages open on every instance); streams are bounded, and a stopping daemon
ends them rather than waiting for them."""

from __future__ import annotations

import asyncio

import aiohttp

from bridge.plugins.c123.simulator import Simulator
from bridge.runtime.daemon import Daemon
from bridge.testing import DaemonFactory, post_json
from tests.console.conftest import base
from tests.console.helpers import PASSWORDS, client, config, csrf_of, login, notification, rows


async def _next_event(stream: aiohttp.ClientResponse) -> str:
    lines: list[str] = []
    while True:
        line = (await stream.content.readline()).decode()
        if line == "":
            return "<closed>"
        if line == "\n" and lines:
            return "".join(lines)
        if line != "\n":
            lines.append(line)


async def _changed(stream: aiohttp.ClientResponse) -> None:
    """Wait for the next `changed` event (pings in between are skipped)."""
    event = await asyncio.wait_for(_next_event(stream), 10)
    assert event.startswith("event: changed"), event


async def _quiet(stream: aiohttp.ClientResponse, seconds: float) -> bool:
    """True when no event comes within `seconds` (the stream stays open)."""
    try:
        await asyncio.wait_for(_next_event(stream), seconds)
    except TimeoutError:
        return True
    return False


async def _drain(stream: aiohttp.ClientResponse) -> None:
    """Read events until none came for longer than the hub's coalescing second."""
    while not await _quiet(stream, 1.5):
        pass


async def _alert(daemon: Daemon, fingerprint: str) -> None:
    status, _ = await post_json(daemon, "/hooks/am", notification("firing", fingerprint))
    assert status == 200


async def test_a_commit_is_told_to_open_pages_and_streams_are_bounded(
    store_url: str, smsbridge_daemon: DaemonFactory
) -> None:
    daemon = await smsbridge_daemon(config(live_clients=2, store_url=store_url))
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
        await _alert(daemon, "f1")  # processed, paged and sent: commits pages show
        for stream in (first, second):
            await _changed(stream)
        second.close()
        # The stopping daemon ends the stream that is still open: the read sees its end.
        stopping = asyncio.create_task(daemon.stop())
        while (event := await asyncio.wait_for(_next_event(first), 10)) != "<closed>":
            assert event.startswith("event: changed"), event  # the rest of the alert's news
        await asyncio.wait_for(stopping, 20)
        first.close()


async def test_a_commit_by_one_instance_reaches_pages_open_on_another(
    pg_url: str, simulator: Simulator, smsbridge_daemon: DaemonFactory
) -> None:
    """Two instances on one database, a page open on each: an alert taken by one (processed by
    the processor leader, sent by either), and a console action on one, reach both pages; a
    quiet cluster (heartbeats and lease renewals only) sends no events."""
    text = config(store_url=pg_url, gateway=simulator.url)
    one = await smsbridge_daemon(text)
    two = await smsbridge_daemon(text)
    async with client() as http:
        assert await login(http, base(one), "alice", PASSWORDS["alice"]) == 303
        streams = [await http.get(f"{base(d)}/events") for d in (one, two)]
        for stream in streams:
            await _next_event(stream)  # connected
        for stream in streams:  # the start's news (the first balance poll)
            await _drain(stream)
        # Heartbeats and lease renewals are commits too, but nothing a page shows.
        assert await _quiet(streams[1], 3.0)
        await _alert(two, "f1")
        for stream in streams:
            await _changed(stream)
        await simulator.state.wait_for(lambda s: len(s.messages) == 1, timeout=10)
        assert await rows(one, "SELECT state FROM incidents") == [("triggered",)]
        for stream in streams:  # the alert's news; then act on one instance only
            await _drain(stream)
        async with http.get(f"{base(one)}/incidents/1") as page:
            token = csrf_of(await page.text())
        async with http.post(
            f"{base(one)}/incidents/1/ack", data={"csrf": token}, allow_redirects=False
        ) as answer:
            assert answer.status == 303
        await _changed(streams[1])  # the other instance's page hears of it
        assert await rows(two, "SELECT state FROM incidents") == [("acknowledged",)]
        for stream in streams:
            stream.close()


async def test_no_console_without_its_section(smsbridge_daemon: DaemonFactory) -> None:
    daemon: Daemon = await smsbridge_daemon("rules: []\n")
    assert daemon.console is None
