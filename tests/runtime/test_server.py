"""The HTTP server: read timeouts against slow senders, and JSON for every 5xx."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bridge.config import ConfigModel
from bridge.logging import configure_logging
from bridge.plugin.base import Input, Parsed
from bridge.runtime.daemon import Daemon
from bridge.testing import DaemonFactory, post_json

READ_TIMEOUT = 0.5
# Time for the loop to notice and for the close to reach the client: generous, not the point.
SLACK = 1.0

CONFIG = f"""
server: {{read_timeout: {int(READ_TIMEOUT * 1000)}ms}}
polling: {{replies: 1h, reports: 1h, balance: 1h}}
inputs:
  am: {{type: alertmanager, allow_unauthenticated: true}}
  broken: {{type: broken}}
"""


class BrokenConfig(ConfigModel):
    """No options."""


class BrokenInput(Input[BrokenConfig]):
    """An adapter with a bug: its handler raises what no one expected."""

    type_name = "broken"
    config_class = BrokenConfig

    def routes(self) -> list[web.RouteDef]:
        return [web.post("", self._handle)]

    def parse(self, body: bytes) -> Parsed:
        return Parsed([])

    async def _handle(self, request: web.Request) -> web.Response:
        raise RuntimeError("an adapter bug at /srv/smsbridge/secret.py line 12")


@pytest.fixture
def log_lines() -> Iterator[Callable[[str], list[dict[str, Any]]]]:
    stream = io.StringIO()
    configure_logging(stream, json=True)

    def lines(event: str) -> list[dict[str, Any]]:
        found = [json.loads(line) for line in stream.getvalue().splitlines()]
        return [line for line in found if line["event"] == event]

    yield lines
    configure_logging(io.StringIO(), json=True)


@pytest.fixture
async def daemon(smsbridge_daemon: DaemonFactory) -> Daemon:
    return await smsbridge_daemon(CONFIG, types=[BrokenInput])


async def closed_after(daemon: Daemon, *parts: bytes) -> tuple[float, bytes]:
    """Connect, send `parts` and then nothing: seconds until the server closed, and what it
    answered before closing."""
    reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
    began = time.monotonic()
    try:
        for part in parts:
            writer.write(part)
            await writer.drain()
        answer = await asyncio.wait_for(reader.read(), READ_TIMEOUT + SLACK + 5)
    finally:
        writer.close()
    return time.monotonic() - began, answer


@pytest.mark.parametrize(
    "parts",
    [
        pytest.param((), id="nothing-sent"),
        pytest.param((b"POST /hooks/am HT",), id="half-a-request-line"),
        pytest.param((b"POST /hooks/am HTTP/1.1\r\nHost: x\r\nContent-Ty",), id="half-the-headers"),
    ],
)
async def test_a_stalled_request_head_is_closed_within_the_timeout(
    daemon: Daemon, parts: tuple[bytes, ...]
) -> None:
    """A client that stops sending before its request head is complete (slowloris) is cut off."""
    elapsed, answer = await closed_after(daemon, *parts)
    assert answer == b""
    assert READ_TIMEOUT * 0.8 <= elapsed <= READ_TIMEOUT + SLACK


async def test_a_stalled_body_is_closed_within_the_timeout(
    daemon: Daemon, log_lines: Callable[[str], list[dict[str, Any]]]
) -> None:
    """A complete head, then half the body it announced, then nothing: closed, and logged."""
    head = (
        b"POST /hooks/am HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n"
    )
    elapsed, answer = await closed_after(daemon, head, b'{"version": "4", ')
    assert answer == b""
    assert READ_TIMEOUT * 0.8 <= elapsed <= READ_TIMEOUT + SLACK
    (line,) = log_lines("request_read_timeout")
    assert (line["method"], line["path"], line["level"]) == ("POST", "/hooks/am", "warning")
    assert log_lines("request_failed") == []


async def test_a_slow_but_timely_request_is_answered(daemon: Daemon) -> None:
    """Parts that arrive within the timeout make a request like any other."""
    body = b'{"version": "4"}'
    reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
    try:
        writer.write(b"POST /hooks/am HTTP/1.1\r\nHost: x\r\n")
        await asyncio.sleep(READ_TIMEOUT / 4)
        writer.write(b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
        await asyncio.sleep(READ_TIMEOUT / 4)
        writer.write(body)
        status_line = await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()
    assert status_line.startswith(b"HTTP/1.1 422 "), "answered (the body is not a notification)"


async def test_an_idle_kept_alive_connection_is_closed(daemon: Daemon) -> None:
    """After an answer, a connection that sends no next request is closed after the timeout."""
    reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200 ")
        length = int(next(h for h in head.split(b"\r\n") if h.startswith(b"Content-Length"))[15:])
        await reader.readexactly(length)
        began = time.monotonic()
        assert await asyncio.wait_for(reader.read(), READ_TIMEOUT + SLACK + 5) == b""
    finally:
        writer.close()
    assert time.monotonic() - began <= READ_TIMEOUT + SLACK


async def test_an_unexpected_error_is_a_json_500_and_logged(
    daemon: Daemon, log_lines: Callable[[str], list[dict[str, Any]]]
) -> None:
    """A handler's bug never shows a traceback to the client: JSON 500, traceback in the log."""
    status, body = await post_json(daemon, "/hooks/broken", {})
    assert (status, body) == (500, {"error": "internal error; the daemon's log has the details"})
    (line,) = log_lines("request_failed")
    assert (line["method"], line["path"]) == ("POST", "/hooks/broken")
    assert "RuntimeError: an adapter bug" in line["exception"]
    assert "Traceback" in line["exception"]


async def test_the_server_still_serves_after_all_that(daemon: Daemon) -> None:
    """Timeouts and errors close their own connections only."""
    await closed_after(daemon, b"GET /heal")
    assert (await post_json(daemon, "/hooks/broken", {}))[0] == 500
    status, body = await post_json(daemon, "/hooks/am", {"version": "4"})
    assert status == 422
    assert "error" in body


async def test_every_http_error_is_json_wherever_it_is_asked(daemon: Daemon) -> None:
    """Paths no route takes and methods a path refuses get JSON too; GET and HEAD still work."""
    url = daemon.url
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/nope/deeper") as response:
            assert response.status == 404
            assert await response.json() == {"error": "no such path /nope/deeper"}
        async with http.post(f"{url}/healthz", data=b"{}") as response:
            assert response.status == 405
            assert await response.json() == {"error": "method POST not allowed on /healthz"}
            assert response.headers["Allow"] == "GET,HEAD"
        async with http.get(f"{url}/hooks/am") as response:
            assert response.status == 405
            assert (await response.json())["error"] == "method GET not allowed on /hooks/am"
        async with http.head(f"{url}/healthz") as response:
            assert response.status == 200
        async with http.get(f"{url}/healthz") as response:
            assert (response.status, await response.json()) == (200, {"status": "alive"})
