"""Gateway subcommands: send, balance, replies, reports, rotate-key."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from bridge.commands.bulk import ENCODINGS, cmd_bulk_send
from bridge.commands.common import (
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    BadInputError,
    add_common,
    gateway,
    load,
)
from bridge.commands.output import emit_json, emit_lines
from bridge.config import os_reason
from bridge.config.models import Config
from bridge.plugins.c123.client import C123Client
from bridge.plugins.c123.errors import C123Error, InvalidRequestError
from bridge.plugins.c123.keyfile import KeyNotSavedError, probe_writable
from bridge.plugins.c123.models import SendResult
from bridge.plugins.c123.validation import check_content, check_schedule
from bridge.rules import Directory, UnresolvedError
from bridge.sms import InvalidNumberError, normalize_number


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the gateway subcommands to the top-level parser."""
    send = subparsers.add_parser(
        "send",
        help="send one text to one or more numbers, or one SMS per row of a CSV file",
        description=(
            "Send one text to one or more numbers, split into the fewest gateway calls; or, "
            "with --csv, one SMS per row of a file. A file's rows are all checked before "
            "anything is sent, then queued in the store below pages (history, the daily "
            "budget and account pauses apply; an ambiguous send is never resent) and sent in "
            "the fewest calls: sendBatch for a text column, sendParam with --template. Running "
            "the same file again (after a crash, a hold, Ctrl-C) sends only the rows not yet "
            "queued, and what is still waiting."
        ),
        epilog=(
            "CSV: a first row naming the columns: 'number' or 'contact' (a name from the "
            "config), and 'text' or, with --template, p1..p10; other columns are ignored. "
            "UTF-8 (with or without BOM) or GBK. '{|}' is refused in texts and values."
        ),
    )
    add_common(send)
    recipients = send.add_mutually_exclusive_group(required=True)
    recipients.add_argument(
        "--to",
        metavar="RECIPIENTS",
        help="comma-separated numbers, and contact and group names from the config, "
        "e.g. 15102110086,alice,oncall",
    )
    send.add_argument(
        "--at",
        type=datetime.fromisoformat,
        metavar="TIME",
        help="schedule for this ISO time, e.g. 2026-12-01T09:00 (gateway time zone unless given)",
    )
    send.add_argument("text", nargs="?", help="the message text")
    recipients.add_argument("--csv", type=Path, metavar="FILE", help="one SMS per row of this file")
    send.add_argument(
        "--template",
        metavar="TEXT",
        help="with --csv: one text for every row, e.g. 'Dear {p1}, your order {p2} ships today' "
        "(p1..p10 are columns)",
    )
    send.add_argument(
        "--encoding",
        choices=ENCODINGS,
        default="auto",
        help="with --csv: the file's encoding (default: UTF-8 if it is valid UTF-8, else GBK)",
    )
    send.add_argument(
        "--dry-run",
        action="store_true",
        help="with --csv: check every row and show the calls, segments and estimated cost",
    )
    send.add_argument(
        "--yes",
        action="store_true",
        help="with --csv: send without asking, even above bulk.confirm_above",
    )
    send.set_defaults(handler=cmd_send)

    for name, handler, what in (
        ("balance", cmd_balance, "show the account balance"),
        ("replies", cmd_replies, "fetch inbound replies (the gateway hands each out only once)"),
        ("reports", cmd_reports, "fetch delivery reports (the gateway hands each out only once)"),
    ):
        sub = subparsers.add_parser(name, help=what, description=what[0].upper() + what[1:] + ".")
        add_common(sub)
        sub.set_defaults(handler=handler)

    rotate = subparsers.add_parser(
        "rotate-key",
        help="issue a new gateway key and store it in the key file",
        description=(
            "Ask the gateway for a new key. The old key stops working at once; the new one is "
            "written to the key file (0600, fsynced) before anything else. A running daemon "
            "finishes its calls in flight and makes no new ones until the new key is in the "
            "file; it then goes on with the new key, without a restart."
        ),
    )
    add_common(rotate)
    rotate.add_argument(
        "--key-file",
        type=Path,
        metavar="FILE",
        help="where to store it (default: gateway.authkey_file)",
    )
    rotate.set_defaults(handler=cmd_rotate_key)


def _send_lines(results: list[tuple[list[str], SendResult | C123Error]]) -> list[str]:
    lines = []
    for numbers, outcome in results:
        who = (
            ", ".join(numbers) if len(numbers) <= 5 else f"{numbers[0]} and {len(numbers) - 1} more"
        )
        if isinstance(outcome, C123Error):
            lines.append(f"NOT SENT to {who}: {outcome}")
        else:
            ids = ", ".join(item.msgid for item in outcome.items[:3])
            more = f" (+{len(outcome.items) - 3})" if len(outcome.items) > 3 else ""
            lines.append(
                f"sent to {who}: {outcome.segments} segment(s), cost {outcome.cost}, "
                f"msgid {ids}{more}, balance {outcome.remain}"
            )
    return lines


_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")


def _nth(position: int) -> str:
    return _ORDINALS[position - 1] if position <= len(_ORDINALS) else f"#{position}"


def _recipients(to: str, config: Config) -> tuple[list[str], list[str]]:
    """The numbers `--to` reaches (numbers, contacts, groups), and what is wrong with it."""
    directory = Directory(config.contacts, config.groups)
    entries = [part.strip() for part in to.split(",") if part.strip()]
    names = bool(config.contacts or config.groups)
    problems: list[str] = []
    for position, entry in enumerate(entries, 1):
        if entry in config.contacts or entry in config.groups:
            continue
        if not names or entry[:1] in "+0123456789":
            try:
                normalize_number(entry)
            except InvalidNumberError as exc:
                problems.append(f"the {_nth(position)} number, {exc}")
            continue
        try:
            directory.check(entry)
        except UnresolvedError as exc:
            problems.append(f"the {_nth(position)} recipient, {entry!r}: {exc}")
    if not entries:
        problems.append("--to names nobody")
    if problems:
        return [], problems
    return [recipient.number for recipient in directory.resolve(entries)], []


def _text_problems(text: str, client: C123Client, at: datetime | None) -> list[str]:
    problems: list[str] = []
    try:
        check_content(text, limits=client.limits)
    except InvalidRequestError as exc:
        problems.append(f"the text {exc.problem}")
    try:
        check_schedule(at, client.config.timezone, datetime.now(UTC), client.limits)
    except InvalidRequestError as exc:
        problems.append(f"the time given with --at {exc.problem}")
    return problems


async def cmd_send(args: argparse.Namespace) -> int:
    if args.csv is not None:
        return await cmd_bulk_send(args)
    unused = [
        option
        for option, given in (
            ("--template", args.template),
            ("--dry-run", args.dry_run),
            ("--yes", args.yes),
            ("--encoding", args.encoding != "auto"),
        )
        if given
    ]
    if unused:
        raise BadInputError(f"{', '.join(unused)} go(es) with --csv only")
    if args.text is None:
        raise BadInputError("--to needs the text to send")
    config = load(args.config)
    numbers, problems = _recipients(args.to, config)
    async with gateway(config) as client:
        problems += _text_problems(args.text, client, args.at)
        if problems:
            raise BadInputError("\n".join(problems))
        calls = client.plan([(number, args.text) for number in numbers])
        results: list[tuple[list[str], SendResult | C123Error]] = []
        for call in calls:
            try:
                results.append((list(call.numbers), await client.send_planned(call, at=args.at)))
            except C123Error as exc:
                results.append((list(call.numbers), exc))
    failed = any(isinstance(outcome, C123Error) for _, outcome in results)
    if args.json:
        emit_json(
            {
                "ok": not failed,
                "calls": [
                    {"numbers": nums, "result": outcome}
                    if isinstance(outcome, SendResult)
                    else {"numbers": nums, "error": str(outcome), "code": _code(outcome)}
                    for nums, outcome in results
                ],
            }
        )
    else:
        emit_lines(_send_lines(results))
    return EXIT_REFUSED if failed else EXIT_OK


def _code(error: C123Error) -> int | str | None:
    return getattr(error, "code", None)


async def cmd_balance(args: argparse.Namespace) -> int:
    async with gateway(load(args.config)) as client:
        balance = await client.get_balance()
    if args.json:
        emit_json(balance)
    else:
        emit_lines([f"balance: {balance.remain} yuan (enterprise {balance.enterprise_id})"])
    return EXIT_OK


async def cmd_replies(args: argparse.Namespace) -> int:
    async with gateway(load(args.config)) as client:
        replies = await client.get_reply()
    if args.json:
        emit_json(replies)
    else:
        emit_lines(
            [
                f"{r.time.isoformat() if r.time else r.raw_time}  {r.mobile}  {r.content}"
                for r in replies
            ]
            or ["no new replies"]
        )
    return EXIT_OK


async def cmd_reports(args: argparse.Namespace) -> int:
    async with gateway(load(args.config)) as client:
        reports = await client.get_send_state()
    if args.json:
        emit_json([{**_report(r), "status": r.status.value} for r in reports])
    else:
        emit_lines(
            [
                f"{r.msgid}  {r.mobile}  {r.status.value}  {r.carrier_code} ({r.description})"
                for r in reports
            ]
            or ["no new delivery reports"]
        )
    return EXIT_OK


def _report(report: object) -> dict[str, object]:
    return {key: getattr(report, key) for key in ("msgid", "mobile", "result", "carrier_code")}


async def cmd_rotate_key(args: argparse.Namespace) -> int:
    config = load(args.config)
    key_file = args.key_file or (config.gateway.authkey_file if config.gateway else None)
    if key_file is None:
        print(
            "smsbridge rotate-key: no key file: set gateway.authkey_file or pass --key-file "
            "(the new key must be stored before the old one stops working)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        # Before the gateway is asked: once it answers, the old key is gone.
        probe_writable(key_file)
    except OSError as exc:
        print(
            f"smsbridge rotate-key: cannot write the key file {key_file}: {os_reason(exc)}; "
            "the gateway was not asked and the key is unchanged",
            file=sys.stderr,
        )
        return EXIT_USAGE
    async with gateway(config, shared=True) as client:
        # A daemon's call in flight must not reach the gateway after the old key died.
        drain = client.config.timeout.total.total_seconds() + 5.0
        try:
            async with client.gate.rotation(drain):
                rotation = await client.update_key(key_file)
        except KeyNotSavedError as exc:
            print(f"smsbridge rotate-key: {exc}; the old key no longer works.", file=sys.stderr)
            if sys.stderr.isatty():
                # Last resort, on an operator's terminal only: otherwise the account is locked out.
                print(f"The new key is: {exc.new_key.get_secret_value()}", file=sys.stderr)
            return EXIT_REFUSED
    if args.json:
        emit_json({"ok": True, "key_file": str(key_file), "enterprise_id": rotation.enterprise_id})
    else:
        emit_lines([f"new key stored in {key_file} (mode 0600); the old key no longer works"])
    return EXIT_OK
