"""`smsbridge console-hash`: hash a console password for the config (scrypt, standard library)."""

from __future__ import annotations

import argparse
import getpass
import sys

from bridge.commands.common import EXIT_OK, BadInputError
from bridge.config.console import PasswordHash


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = subparsers.add_parser(
        "console-hash",
        help="hash a password for a console user's password_hash",
        description=(
            "Read a password (asked twice on a terminal, else the first line of standard input) "
            "and print its scrypt hash for `console.users.NAME.password_hash`."
        ),
    )
    command.set_defaults(handler=cmd_console_hash)


def _password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise BadInputError("the two passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


async def cmd_console_hash(args: argparse.Namespace) -> int:
    password = _password()
    if len(password) < 8:
        raise BadInputError("a console password needs at least 8 characters")
    print(PasswordHash.make(password).text())
    return EXIT_OK
