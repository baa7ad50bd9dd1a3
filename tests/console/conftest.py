"""Fixtures of the console tests: a running daemon with its console (once on SQLite, once on
PostgreSQL), and a logged-in client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from bridge.runtime.daemon import Daemon
from bridge.store import Dialect
from bridge.testing import DaemonFactory
from tests.console.helpers import PASSWORDS, client, config, login


@pytest.fixture
def store_url(backend: tuple[Dialect, str]) -> str:
    """Where the daemons of this test keep their store: '' for a SQLite file, else the URL of
    a PostgreSQL database of this test's own (each backend in turn)."""
    return backend[1]


@pytest_asyncio.fixture
async def daemon(store_url: str, smsbridge_daemon: DaemonFactory) -> Daemon:
    # store_url first: its database outlives the daemons, which stop at smsbridge_daemon's end.
    return await smsbridge_daemon(config(store_url=store_url))


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
