"""`smsbridge messages`, `queue` and `incidents`: what was sent, what waits, what is open."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import bridge.commands.history.source as source
import bridge.commands.history.views as views
from bridge.commands.common import EXIT_CONFIG, EXIT_OK, BadInputError, add_common
from bridge.commands.output import emit_json, emit_lines
from bridge.config import parse_duration
from bridge.sms import InvalidNumberError, normalize_number
from bridge.store import Connection

T = TypeVar("T")
_TIME = "%Y-%m-%d %H:%M:%S"
_BESIDE = "reads the store only: safe beside a running daemon"


def _duration(text: str) -> float:
    try:
        return parse_duration(text).total_seconds()
    except ValueError:
        message = f"expected a duration like 30m, 1h or 2d, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def _states(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in views.STATES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown state {', '.join(unknown) or repr(text)}; one of {', '.join(views.STATES)}"
        )
    return names


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `messages`, `queue` and `incidents`."""
    messages = subparsers.add_parser(
        "messages",
        help="list messages and their delivery states, newest first",
        description=f"List messages, newest first, with their delivery states ({_BESIDE}).",
    )
    add_common(messages)
    messages.add_argument("--since", type=_duration, metavar="DURATION", help="e.g. 1h, 2d")
    messages.add_argument(
        "--to", action="append", default=[], metavar="NAME|NUMBER", help="a contact or number"
    )
    messages.add_argument(
        "--state",
        type=_states,
        action="extend",
        default=[],
        metavar="STATE",
        help=f"comma-separated: {', '.join(views.STATES)}",
    )
    messages.add_argument("--limit", type=_positive, default=50, metavar="N", help="default 50")
    messages.add_argument(
        "--before", type=_positive, metavar="ID", help="the next page: ids below this one"
    )
    messages.set_defaults(handler=_handled(cmd_messages))

    queue = subparsers.add_parser(
        "queue",
        help="list messages waiting: queued, retrying, held (and why); paused accounts",
        description=(
            f"List messages not yet settled, oldest first, and paused accounts ({_BESIDE})."
        ),
    )
    add_common(queue)
    queue.add_argument("--limit", type=_positive, default=50, metavar="N", help="default 50")
    queue.add_argument("--after", type=_positive, metavar="ID", help="the next page: ids above")
    queue.set_defaults(handler=_handled(cmd_queue))

    incidents = subparsers.add_parser(
        "incidents",
        help="list open incidents",
        description=f"List incidents not yet resolved ({_BESIDE}).",
    )
    add_common(incidents)
    incidents.set_defaults(handler=_handled(cmd_incidents))


async def _read(config: Path | None, query: Callable[[Connection], T]) -> T:
    store = (await asyncio.to_thread(source.load_sections, config)).store

    def run() -> T:
        with source.read_store(store) as conn:
            return query(conn)

    return await asyncio.to_thread(run)


def _handled(
    handler: Callable[[argparse.Namespace], Awaitable[int]],
) -> Callable[[argparse.Namespace], Awaitable[int]]:
    """A handler that says a store too old to read in one line and exits 78."""

    async def run(args: argparse.Namespace) -> int:
        try:
            return await handler(args)
        except source.StoreTooOldError as exc:
            print(f"smsbridge {args.command}: {exc}", file=sys.stderr)
            return EXIT_CONFIG

    return run


def _recipients(config: source.HistoryConfig, wanted: Sequence[str]) -> list[str]:
    """Numbers for `--to` values: a contact's name, or a number in any written form."""
    found: list[str] = []
    problems: list[str] = []
    for value in wanted:
        contact = config.contacts.get(value)
        if contact is not None:
            found.append(contact.number)
            continue
        try:
            found.append(normalize_number(value))
        except InvalidNumberError:
            if value.lstrip("+").isdigit():
                found.append(value.lstrip("+"))
            else:
                problems.append(f"--to {value!r}: neither a contact in the config nor a number")
    if problems:
        raise BadInputError("\n".join(problems))
    return found


def _at(value: datetime | None) -> str:
    return value.astimezone().strftime(_TIME) if value else ""


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns padded to their widest cell; the last column is left as it is (a text)."""
    everything = [list(header), *(list(row) for row in rows)]
    widths = [max(len(row[column]) for row in everything) for column in range(len(header) - 1)]
    return [
        "  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]]).rstrip()
        for row in everything
    ]


def _progress(message: views.Message) -> str:
    """queued -> sent -> delivered (DELIVRD), as far as the message got."""
    steps = [f"queued {_at(message.queued_at)}"]
    if message.state in ("held", "retrying"):
        steps[0] += f" ({message.state}: {message.reason})" if message.reason else ""
    elif message.state == "sending":
        steps.append("sending")
    elif message.msgid or message.state in ("sent", "delivered") or message.carrier_code:
        steps.append(f"sent {_at(message.settled_at)}")
        if message.state != "sent":
            steps.append(f"{message.state} ({message.carrier_code or 'no code'})")
    else:  # failed or unknown before the gateway took it
        steps.append(f"{message.state} {_at(message.settled_at)}: {message.reason}".rstrip(": "))
    return " -> ".join(steps)


async def cmd_messages(args: argparse.Namespace) -> int:
    config = await asyncio.to_thread(source.load_sections, args.config)
    recipients = _recipients(config, args.to)
    since = None
    if args.since is not None:
        since = datetime.now().timestamp() - args.since

    def query(conn: Connection) -> list[views.Message]:
        return views.messages(
            conn,
            since=since,
            recipients=recipients,
            states=args.state,
            before=args.before,
            limit=args.limit,
        )

    found = await _read(args.config, query)
    more = found[-1].id if len(found) == args.limit else None
    if args.json:
        emit_json({"messages": found, "next_before": more})
        return EXIT_OK
    if not found:
        emit_lines(["no messages"])
        return EXIT_OK
    rows = [
        (
            str(m.id),
            m.event or "-",
            m.rule or "-",
            m.to,
            m.state,
            m.msgid or "-",
            str(m.segments),
            str(m.cost),
            _progress(m),
        )
        for m in found
    ]
    header = ("ID", "EVENT", "RULE", "TO", "STATE", "MSGID", "SEG", "COST", "PROGRESS")
    table = _table(header, rows)
    lines = [table[0]]
    for message, line in zip(found, table[1:], strict=True):
        lines.extend((line, f"    {message.text}"))  # the text in full, on a line of its own
    if more is not None:
        lines.append(f"more: --before {more}")
    emit_lines(lines)
    return EXIT_OK


async def cmd_queue(args: argparse.Namespace) -> int:
    def query(conn: Connection) -> tuple[list[views.Waiting], list[views.AccountPause]]:
        return views.queue(conn, after=args.after, limit=args.limit), views.pauses(conn)

    waiting, paused = await _read(args.config, query)
    more = waiting[-1].id if len(waiting) == args.limit else None
    if args.json:
        emit_json({"paused_accounts": paused, "messages": waiting, "next_after": more})
        return EXIT_OK
    lines: list[str] = []
    for pause in paused:
        probe = f"probed again {_at(pause.probe_at)}" if pause.probe_at else "until its key changes"
        lines.append(
            f"account {pause.account} paused since {_at(pause.since)}: {pause.reason} "
            f"({pause.detail}); {probe}"
        )
    if not waiting:
        lines.append("no messages waiting")
    else:
        rows = [
            (
                str(w.id),
                w.rule or "-",
                w.to,
                w.state,
                str(w.attempts),
                _at(w.queued_at),
                _next(w),
                f"{w.hold}: {w.reason}" if w.hold else w.reason,
            )
            for w in waiting
        ]
        header = ("ID", "RULE", "TO", "STATE", "TRIES", "QUEUED", "NEXT", "REASON")
        lines.extend(_table(header, rows))
    if more is not None:
        lines.append(f"more: --after {more}")
    emit_lines(lines)
    return EXIT_OK


def _next(waiting: views.Waiting) -> str:
    if waiting.next_at is None:
        return "being sent"
    if waiting.next_at <= datetime.now().astimezone():
        return "now"
    moment = _at(waiting.next_at)
    return f"{moment} or when released" if waiting.hold else moment


async def cmd_incidents(args: argparse.Namespace) -> int:
    found = await _read(args.config, views.incidents)
    if args.json:
        emit_json({"incidents": found})
        return EXIT_OK
    if not found:
        emit_lines(["no open incidents"])
        return EXIT_OK
    rows: list[tuple[str, ...]] = [
        (
            f"#{i.id}",
            i.state,
            _at(i.opened_at),
            i.acked_by or "-",
            f"{i.pages} ({', '.join(i.paged) or 'nobody yet'})",
            i.title,
        )
        for i in found
    ]
    emit_lines(_table(("INCIDENT", "STATE", "OPENED", "ACKED BY", "PAGES", "TITLE"), rows))
    return EXIT_OK
