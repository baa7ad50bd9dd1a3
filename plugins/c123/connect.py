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
        yield (
            simulator,
            C123Config(base_url=url, account=DEFAULT_ACCOUNT, authkey=SecretStr(DEFAULT_AUTHKEY)),
        )
    finally:
        await simulator.stop()


@asynccontextmanager
async def open_client(
    config: C123Config | None,
    session: aiohttp.ClientSession,
    log: Any = None,
    marks: Marks | None = None,
) -> AsyncIterator[C123Client]:
    """A client for `config` keeping the account's marks in `marks`; with no gateway
    configured, one on a built-in simulator."""
    log = log if log is not None else structlog.get_logger("smsbridge.c123")
    if config is not None:
        yield C123Client(config, session, log=log, marks=marks)
        return
    async with embedded_simulator() as (simulator, sim_config):
        log.warning(
            "gateway_simulator_embedded",
            url=simulator.url,
            reason="no gateway configured: messages go to a built-in simulator, not to phones",
        )
        yield C123Client(sim_config, session, log=log)
