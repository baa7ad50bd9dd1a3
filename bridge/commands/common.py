"""What every subcommand shares: exit codes, loading the config, a session and a gateway client."""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import aiohttp

from bridge.config import load_config
from bridge.config.models import Config
from bridge.plugin import StoreUnavailableError
from bridge.plugins.c123.client import C123Client
from bridge.plugins.c123.errors import KeyRotationError
from bridge.plugins.c123.marks import StoreMarks
from bridge.store import StoreOpenError, make_store

EXIT_OK = 0
EXIT_REFUSED = 1  # the gateway refused or could not be reached, or the message is held
EXIT_USAGE = 2  # refused before any gateway call: bad input (argparse uses 2 as well)
EXIT_TEMPFAIL = 75  # EX_TEMPFAIL: may pass by itself (a full disk), so systemd restarts it
EXIT_CONFIG = 78  # EX_CONFIG: systemd's RestartPreventExitStatus keys on it

# Every command's exit codes, shown by `smsbridge --help` and in the README.
EXIT_CODES = (
    (EXIT_OK, "done"),
    (EXIT_REFUSED, "refused by the gateway (or it could not be reached), or held"),
    (EXIT_USAGE, "refused before any call: bad input (an option, a number, a text, a time)"),
    (
        EXIT_TEMPFAIL,
        "the store's disk is full, or another daemon runs on its SQLite file: it may pass, so "
        "systemd tries again",
    ),
    (
        EXIT_CONFIG,
        "bad config, wherever it is found (a key file's content too), or a store that "
        "cannot be opened or written",
    ),
)


class BadInputError(Exception):
    """What the command was given cannot be used; each line of the message is one problem.

    Raised before any gateway call, so nothing was sent.
    """


def exit_code_help() -> str:
    """The exit code table as `--help` prints it."""
    rows = "\n".join(f"  {code:<4}{meaning}" for code, meaning in EXIT_CODES)
    return f"exit codes:\n{rows}"


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
async def gateway(config: Config, *, shared: bool = False) -> AsyncIterator[C123Client]:
    """A client on the configured gateway, with its own session; without one, on the simulator
    of a daemon running with this config (`simulator.port`), else on a built-in simulator.

    A configured account keeps its marks (a wrong key, a pause, a rotation) in the daemon's
    store, so a command respects what the daemon found and the daemon what a command found.
    A store this command cannot open is said on stderr, or (`shared`: the command must reach
    the daemon) raises KeyRotationError.
    """
    from bridge.plugins.c123.connect import open_client  # loads the simulator only if used

    async with AsyncExitStack() as stack:
        marks = None
        if config.gateway is not None:
            store = make_store(config.store.path, config.store.conninfo())
            try:
                await store.open()
            except (OSError, sqlite3.Error, StoreOpenError, StoreUnavailableError) as exc:
                await store.close()
                problem = f"the store {store.where} cannot be opened ({exc})"
                if shared:
                    raise KeyRotationError(
                        f"{problem}: a running daemon could not be told; the key was not rotated"
                    ) from None
                print(
                    f"smsbridge: {problem}; marks the daemon keeps there (a wrong key, a "
                    "paused account) are not seen by this command",
                    file=sys.stderr,
                )
            else:
                stack.push_async_callback(store.close)
                marks = StoreMarks(store)
        session = await stack.enter_async_context(aiohttp.ClientSession())
        yield await stack.enter_async_context(
            open_client(config.gateway, session, marks=marks, simulator_port=config.simulator.port)
        )
