"""`smsbridge route`: a dry run that shows which rules match an event and what would be sent."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bridge.commands.dryrun as dryrun
from bridge.commands.common import EXIT_OK, EXIT_USAGE
from bridge.commands.output import emit_json, emit_lines
from bridge.events import Event
from bridge.runtime import Settings, load_settings
from bridge.store import Connection, read_only_database
from bridge.text import terminal_safe

_TIME = "%a %Y-%m-%d %H:%M %z"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    route = subparsers.add_parser(
        "route",
        help="show what an event would send, without sending",
        description=(
            "Dry run: which rules match EVENT (a JSON event: kind, source, labels, text, status, "
            "fingerprint, data), the rendered texts with segments and cost, and the recipients "
            "after windows, repeats and caps (read from the outbox when it exists); for a rule "
            "that pages, the escalation timeline if nobody acknowledges. Sends nothing."
        ),
    )
    route.add_argument("-c", "--config", type=Path, metavar="FILE", help="config file")
    route.add_argument("event", type=Path, metavar="EVENT.json", help="the event ('-' for stdin)")
    route.add_argument(
        "--at",
        type=datetime.fromisoformat,
        metavar="TIME",
        help="evaluate as if at this ISO time (default: now)",
    )
    route.add_argument("--json", action="store_true", help="print one JSON document")
    route.set_defaults(handler=cmd_route)


def _read_event(path: Path) -> Event:
    text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    return Event.from_json(json.loads(text))


@contextmanager
def _outbox(settings: Settings) -> Iterator[Connection | None]:
    """The store read-only, for what it knows (caps used, repeats); None: no store yet."""
    conninfo = settings.config.store.conninfo()
    if conninfo is not None:
        with read_only_database(conninfo) as found:
            yield found
        return
    path = settings.config.store.path
    if not path.exists():
        yield None
        return
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        yield conn
    finally:
        conn.close()


async def cmd_route(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    try:
        event = _read_event(args.event)
    except (OSError, ValueError, KeyError) as exc:
        print(terminal_safe(f"smsbridge route: cannot read the event: {exc}"), file=sys.stderr)
        return EXIT_USAGE
    at = args.at or datetime.now(UTC)
    if at.tzinfo is None:
        at = at.replace(tzinfo=settings.timezone)
    now = at.timestamp() if args.at else time.time()
    with _outbox(settings) as conn:
        report = dryrun.report(settings, conn, event, at, now)
    if args.json:
        emit_json(report)
    else:
        emit_lines(_lines(report))
    return EXIT_OK


def _rule_line(rule: dict[str, Any], shadowing: set[str]) -> str:
    name = rule["rule"]
    if not rule["matched"]:
        return f"  {name}: no match ({rule['why_not']})"
    if rule["shadowed_by"]:
        return (
            f"  {name}: matches, but is not reached: rule {rule['shadowed_by']!r} wins, it "
            "matches first and has no `continue: true`"
        )
    if name in shadowing:
        return f"  {name}: matches and wins: no `continue: true`, so later rules are not tried"
    return f"  {name}: matches"


def _offset_text(offset: timedelta) -> str:
    minutes, seconds = divmod(int(offset.total_seconds()), 60)
    return f"+{minutes}m{seconds:02d}s" if seconds else f"+{minutes}m"


def _lines(report: dict[str, Any]) -> list[str]:
    event = report["event"]
    labels = " ".join(f"{k}={v}" for k, v in sorted(event["labels"].items()))
    lines = [
        f"event: {event['kind']} from {event['source'] or '?'}, {event['status']}, {labels}",
        "rules:",
    ]
    shadowing = {rule["shadowed_by"] for rule in report["rules"] if rule["shadowed_by"]}
    lines.extend(_rule_line(rule, shadowing) for rule in report["rules"])
    if not report["decisions"]:
        lines.append("nothing would be sent")
    for decision in report["decisions"]:
        lines.append(f"rule {decision['rule']}:")
        sms = decision.get("sms")
        if sms:
            if not sms["wanted"]:
                lines.append("  sms: not sent (send_resolved is off)")
            summary = " (the group's summary)" if sms["grouped"] else ""
            lines.append(f"  sms via {sms['output']}{summary}: {sms['text']!r}")
            lines.append(f"    {sms['segments']} segment(s), {sms['cost_per_number']} per number")
            if sms["template_error"]:
                lines.append(f"    template fell back: {sms['template_error']}")
            for r in sms["recipients"]:
                lines.append(f"    to {r['name']} ({r['number']}): {r['outcome']}")
        post = decision.get("post")
        if post:
            lines.append(f"  post to {post['to']}: {post['text']!r}")
        page = decision.get("page")
        if page:
            lines.extend(_page_lines(page))
    return lines


def _page_lines(page: dict[str, Any]) -> list[str]:
    head = f"  page through policy {page['policy']}, incident {page['incident']}"
    if page["resolves"]:
        return [f"{head}: resolves the incident if open; nothing is paged"]
    if "steps" not in page:
        return [f"{head}: the policy is not defined; nothing is paged"]
    lines = [
        f"{head}: {page['steps']} step(s), repeat {page['repeat']}; "
        f"if nobody acknowledges, {page['pages']} page(s):"
    ]
    for line in page["timeline"]:
        when = f"    {_offset_text(timedelta(seconds=line['offset_seconds']))} "
        when += f"{line['at'].strftime(_TIME)} pass {line['pass']} step {line['step']}:"
        if "nobody_on_call" in line:
            lines.append(f"{when} warning: nobody on call in schedule {line['nobody_on_call']}")
            continue
        people = ", ".join(_target_text(t) for t in line["targets"])
        lines.append(f"{when} {people}")
        if "postpones_seconds" in line:
            wait = timedelta(seconds=round(line["postpones_seconds"]))
            lines.append(f"      everyone paged is in quiet hours: the next step waits {wait}")
    return lines


def _target_text(target: dict[str, Any]) -> str:
    text = f"{target['name']} ({target['number']}, {target['via']})"
    if "held_until" in target:
        released = target["held_until"].strftime(_TIME)
        text += f" held by quiet hours, released in one digest at {released}"
    return text
