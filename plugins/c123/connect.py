"""Opens a client on the configured gateway, or on an in-process simulator when none is set."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import structlog
from pydantic import SecretStr

from bridge.plugins.c123.client import C123Client
from bridge.plugins.c123.config import C123Config
from bridge.plugins.c123.marks import Marks
from bridge.plugins.c123.simulator import (
    DEFAULT_ACCOUNT,
    DEFAULT_AUTHKEY,
    Simulator,
    SimulatorSettings,
)


@asynccontextmanager
async def embedded_simulator(
    settings: SimulatorSettings | None = None, port: int = 0
) -> AsyncIterator[tuple[Simulator, C123Config]]:
    """A simulator on a loopback port (0: a free one) and the gateway config pointing at it."""
    simulator = Simulator(settings or SimulatorSettings())
    url = await simulator.start(host="127.0.0.1", port=port)
    try:
        yield simulator, simulator_config(url)
    finally:
        await simulator.stop()


def simulator_config(url: str) -> C123Config:
    """The gateway config of a simulator at `url`: its default account and public key."""
    return C123Config(base_url=url, account=DEFAULT_ACCOUNT, authkey=SecretStr(DEFAULT_AUTHKEY))


async def running_simulator(port: int, session: aiohttp.ClientSession) -> C123Config | None:
    """The simulator a running daemon embeds on 127.0.0.1:`port` (the demo's), or None when no
    simulator answers there (or `port` is 0: a free port nobody else knows)."""
    if not port:
        return None
    url = f"http://127.0.0.1:{port}"
    try:
        async with session.get(
            f"{url}/_sim/accounts/{DEFAULT_ACCOUNT}", timeout=aiohttp.ClientTimeout(total=2)
        ) as response:
            if response.status != 200:
                return None
    except (aiohttp.ClientError, TimeoutError):
        return None
    return simulator_config(url)


@asynccontextmanager
async def open_client(
    config: C123Config | None,
    session: aiohttp.ClientSession,
    log: Any = None,
    marks: Marks | None = None,
    simulator_port: int = 0,
) -> AsyncIterator[C123Client]:
    """A client for `config` keeping the account's marks in `marks`; with no gateway
    configured, one on the simulator a daemon runs on `simulator_port`, else on a built-in one.
    """
    log = log if log is not None else structlog.get_logger("smsbridge.c123")
    if config is not None:
        yield C123Client(config, session, log=log, marks=marks)
        return
    shared = await running_simulator(simulator_port, session)
    if shared is not None:
        # Beside `./dev demo`: the daemon's simulator is where its phones and reports are.
        log.info("gateway_simulator_shared", url=shared.base_url)
        yield C123Client(shared, session, log=log)
        return
    async with embedded_simulator() as (simulator, sim_config):
        log.warning(
            "gateway_simulator_embedded",
            url=simulator.url,
            reason="no gateway configured: messages go to a built-in simulator, not to phones",
        )
        yield C123Client(sim_config, session, log=log)
