"""The `smsbridge` command line: parses arguments, maps failures to exit codes, owns signals."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import signal
import sys
from collections.abc import Sequence
from typing import Protocol

from bridge import __version__
from bridge.commands.common import (
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_TEMPFAIL,
    EXIT_USAGE,
    BadInputError,
    exit_code_help,
)
from bridge.config import ConfigError
from bridge.logging import configure_logging
from bridge.plugins.c123.errors import C123Error, InvalidRequestError
from bridge.plugins.c123.keyfile import KeyFileError
from bridge.runtime import Notifier
from bridge.store import SchemaTooNewError, StoreLockedError, StoreOpenError


class _Family(Protocol):
    def register(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        """Add the family's subcommands."""


# The modules of bridge.commands, each registering one family of subcommands.
FAMILIES = (
    "daemon",
    "route",
    "oncall",
    "page",
    "gateway",
    "simulator",
    "store",
    "history",
    "status",
    "queue",
    "console",
)
# Subcommands whose family is all they need: `smsbridge run` imports no other command's code
# (an idle daemon's memory is mostly code; history and gateway are ~0.6 MB of it).
_FAMILY_OF = {"run": "daemon", "check": "daemon"}
_TOP_VALUED = frozenset({"--log-level"})  # top-level options that take a value


def families_for(argv: Sequence[str]) -> tuple[str, ...]:
    """The command families `argv` needs: the one of its subcommand when that is known,
    else all of them (for help, errors and every other command)."""
    words = iter(argv)
    for word in words:
        if word in _TOP_VALUED:
            next(words, None)
        elif not word.startswith("-"):
            family = _FAMILY_OF.get(word)
            return (family,) if family else FAMILIES
        elif word.split("=", 1)[0] not in _TOP_VALUED:
            return FAMILIES  # -h, --version: the full list
    return FAMILIES


def build_parser(families: Sequence[str] = FAMILIES) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smsbridge",
        description="Pages people by SMS and carries SMS conversations into team chat.",
        epilog=exit_code_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"smsbridge {__version__}")
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="default: info for long-running commands, warning for the others",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for family in families:
        module: _Family = importlib.import_module(f"bridge.commands.{family}")
        module.register(subparsers)
    return parser


async def _run(args: argparse.Namespace, long_running: bool) -> int:
    """Run the handler; SIGTERM and SIGINT cancel it (a clean stop for long-running commands),
    SIGHUP asks it to reload. This is the only place that touches signals."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    signalled: list[int] = []
    args.reload_requests = asyncio.Queue()
    args.notifier = Notifier.from_environ(os.environ)

    def stop(signum: int) -> None:
        signalled.append(signum)
        task.cancel()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop, signum)
    loop.add_signal_handler(signal.SIGHUP, args.reload_requests.put_nowait, None)
    try:
        return int(await args.handler(args))
    except asyncio.CancelledError:
        if not signalled:
            raise
        return EXIT_OK if long_running else 128 + signalled[0]
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand and return its exit code."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(families_for(argv))
    args = parser.parse_args(argv)
    long_running = getattr(args, "long_running", False)
    # The daemon logs to stdout for journald; commands keep stdout for their own output.
    stream = sys.stdout if getattr(args, "log_stream", "stderr") == "stdout" else sys.stderr
    configure_logging(stream, level=args.log_level or ("info" if long_running else "warning"))
    try:
        return asyncio.run(_run(args, long_running))
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_CONFIG
    except KeyFileError as exc:
        # Checked when the config loads; this is the file going bad between that and its use.
        print(f"smsbridge {args.command}: gateway.authkey_file: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except BadInputError as exc:
        for line in str(exc).splitlines():
            print(f"smsbridge {args.command}: {line}", file=sys.stderr)
        return EXIT_USAGE
    except SchemaTooNewError as exc:  # restarting cannot help either: 78 stops systemd's loop
        print(f"smsbridge {args.command}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except InvalidRequestError as exc:
        print(f"smsbridge {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except C123Error as exc:
        print(f"smsbridge {args.command}: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except StoreLockedError as exc:  # the other daemon may be on its way out: try again
        print(f"smsbridge {args.command}: {exc}", file=sys.stderr)
        return EXIT_TEMPFAIL
    except StoreOpenError as exc:  # an environment problem, told in one line like a config one
        print(f"smsbridge {args.command}: {exc}", file=sys.stderr)
        return EXIT_TEMPFAIL if exc.transient else EXIT_CONFIG
