"""What every subcommand shares: exit codes, loading the config, a session and a gateway client."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from bridge.config import load_config
from bridge.config.models import Config
from bridge.plugins.c123.client import C123Client

EXIT_OK = 0
EXIT_REFUSED = 1  # the gateway refused, or could not be reached
EXIT_USAGE = 2
EXIT_TEMPFAIL = 75  # EX_TEMPFAIL: may pass by itself (a full disk), so systemd restarts it
EXIT_CONFIG = 78  # EX_CONFIG: systemd's RestartPreventExitStatus keys on it


def add_common(parser: argparse.ArgumentParser, *, json_output: bool = True) -> None:
    """The options every gateway subcommand takes."""
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        metavar="FILE",
        help="config file (default: none, which uses the built-in simulator)",
    )
    if json_output:
        parser.add_argument("--json", action="store_true", help="print one JSON document")


def load(path: Path | None) -> Config:
    """The config at `path`, or the empty config (built-in simulator) when none is given.

    Raises ConfigError with every problem found.
    """
    if path is None:
        return Config()
    return load_config(path, Config)


@asynccontextmanager
async def gateway(config: Config) -> AsyncIterator[C123Client]:
    """A client on the configured gateway (or the built-in simulator), with its own session."""
    from bridge.plugins.c123.connect import open_client  # loads the simulator only if used

    async with aiohttp.ClientSession() as session, open_client(config.gateway, session) as client:
        yield client
