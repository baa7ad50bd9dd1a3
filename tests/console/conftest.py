"""Fixtures of the console tests: a running daemon with its console, and a logged-in client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest_asyncio

from bridge.runtime.daemon import Daemon
from bridge.testing import DaemonFactory
from tests.console.helpers import PASSWORDS, client, config, login


@pytest_asyncio.fixture
async def daemon(smsbridge_daemon: DaemonFactory) -> Daemon:
    return await smsbridge_daemon(config())


def base(daemon: Daemon) -> str:
    assert daemon.console is not None
    return daemon.console.url


@pytest_asyncio.fixture
async def operator(daemon: Daemon) -> AsyncIterator[aiohttp.ClientSession]:
    """A client logged in as alice, an operator."""
    async with client() as http:
        assert await login(http, base(daemon), "alice", PASSWORDS["alice"]) == 303
        yield http


@pytest_asyncio.fixture
async def viewer(daemon: Daemon) -> AsyncIterator[aiohttp.ClientSession]:
    """A client logged in as victor, a viewer."""
    async with client() as http:
        assert await login(http, base(daemon), "victor", PASSWORDS["victor"]) == 303
        yield http
