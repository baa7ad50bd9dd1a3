"""`smsbridge oncall`: who is on call now (or at a given time), and the next handoffs."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bridge.commands.common import EXIT_OK, EXIT_USAGE
from bridge.commands.history.source import StoreTooOldError, read_store
from bridge.commands.output import emit_json, emit_lines
from bridge.config import ConfigError, issue_at, load_yaml, read_config_file
from bridge.config.models import Config
from bridge.paging import (
    ScheduleConfig,
    Unreachable,
    check_references,
    next_handoffs,
    unreachable,
    who_is_on_call,
)
from bridge.rules import Directory
from bridge.runtime import Settings, load_settings
from bridge.sms import mask_number
from bridge.store import StoreOpenError

DEFAULT_HANDOFFS = 3
_NOBODY = "(nobody)"
_TIME = "%a %Y-%m-%d %H:%M %z"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    oncall = subparsers.add_parser(
        "oncall",
        help="show who is on call and the next handoffs",
        description=(
            "Who is on call in each schedule (or in SCHEDULE) now or at TIME, and the next "
            "handoffs, in each schedule's time zone. Overrides and layers are applied."
        ),
    )
    oncall.add_argument("schedule", nargs="?", metavar="SCHEDULE", help="one schedule only")
    oncall.add_argument("-c", "--config", type=Path, metavar="FILE", help="config file")
    oncall.add_argument(
        "--at",
        type=datetime.fromisoformat,
        metavar="TIME",
        help="ISO time to ask about (default: now); without an offset, in the gateway's zone",
    )
    oncall.add_argument(
        "-n",
        "--handoffs",
        type=int,
        default=DEFAULT_HANDOFFS,
        metavar="N",
        help=f"how many coming handoffs to list (default: {DEFAULT_HANDOFFS})",
    )
    oncall.add_argument("--json", action="store_true", help="print one JSON document")
    oncall.set_defaults(handler=cmd_oncall)


def _check(config: Config, path: Path | None) -> None:
    """Raise ConfigError for `oncall` names that are no contact, group or schedule."""
    if config.oncall is None or path is None:
        return
    problems = check_references(config.oncall, config.contacts, config.groups)
    if problems:
        document = load_yaml(read_config_file(path), str(path))
        raise ConfigError(issue_at(document, where, message) for where, message in problems)


def _describe(name: str, schedule: ScheduleConfig, at: datetime, count: int) -> dict[str, Any]:
    return {
        "name": name,
        "timezone": schedule.timezone.key,
        "on_call": who_is_on_call(schedule, at),
        "next_handoffs": [
            {
                "at": handoff.at.astimezone(schedule.timezone),
                "from": list(handoff.before),
                "to": list(handoff.after),
            }
            for handoff in next_handoffs(schedule, at, count)
        ],
    }


def _unreachable(settings: Settings, schedules: dict[str, ScheduleConfig]) -> list[Unreachable]:
    """Members whose last page was not delivered, from the store when there is one."""
    store = settings.config.store
    if not schedules or (store.conninfo() is None and not store.path.exists()):
        return []
    directory = Directory(settings.config.contacts, settings.config.groups)
    try:
        with read_store(store) as conn:
            return unreachable(conn, schedules, directory)
    except (StoreOpenError, StoreTooOldError):
        return []  # nothing to warn of that can be read; who is on call still stands


async def cmd_oncall(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    _check(settings.config, args.config)
    schedules = settings.config.oncall.schedules if settings.config.oncall else {}
    if args.schedule is not None and args.schedule not in schedules:
        defined = ", ".join(sorted(schedules)) or "none"
        print(
            f"smsbridge oncall: unknown schedule {args.schedule!r} (defined: {defined})",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.handoffs < 0:
        print("smsbridge oncall: --handoffs must not be negative", file=sys.stderr)
        return EXIT_USAGE
    at: datetime = args.at or datetime.now(settings.timezone)
    if at.tzinfo is None:
        at = at.replace(tzinfo=settings.timezone)
    names = [args.schedule] if args.schedule is not None else sorted(schedules)
    shown = {name: schedules[name] for name in names}
    report = {
        "at": at,
        "schedules": [_describe(name, schedules[name], at, args.handoffs) for name in names],
        "warnings": [
            {
                "schedule": item.schedule,
                "member": item.member,
                "number": mask_number(item.number),
                "paged_at": datetime.fromtimestamp(item.paged_at, UTC).astimezone(at.tzinfo),
                "status": item.status,
            }
            for item in _unreachable(settings, shown)
        ],
    }
    if args.json:
        emit_json(report)
    else:
        emit_lines(_lines(report))
    return EXIT_OK


def _people(names: list[str]) -> str:
    return ", ".join(names) or _NOBODY


def _lines(report: dict[str, Any]) -> list[str]:
    if not report["schedules"]:
        return ["no on-call schedules are defined (oncall.schedules)"]
    rows = [("SCHEDULE", "ON CALL", "NEXT HANDOFF", "TO")]
    for schedule in report["schedules"]:
        handoffs = schedule["next_handoffs"] or [None]
        for index, handoff in enumerate(handoffs):
            first = index == 0
            rows.append(
                (
                    schedule["name"] if first else "",
                    _people(schedule["on_call"]) if first else "",
                    handoff["at"].strftime(_TIME) if handoff else "none within a year",
                    _people(handoff["to"]) if handoff else "",
                )
            )
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    at = report["at"].strftime(_TIME)
    lines = [f"on call at {at}", ""]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[3]]).rstrip())
    for warning in report["warnings"]:
        why = "no delivery report came" if warning["status"] == "timeout" else "it failed"
        lines.append(
            f"warning: {warning['member']} ({warning['number']}) of {warning['schedule']}: the "
            f"last page, {warning['paged_at'].strftime(_TIME)}, was not delivered ({why})"
        )
    return lines
