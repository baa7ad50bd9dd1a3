"""`smsbridge status`: the instances on the store, and who holds each lease (reads only)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import bridge.commands.history.source as source
from bridge.commands.common import EXIT_CONFIG, EXIT_OK, add_common
from bridge.commands.output import emit_json, emit_lines
from bridge.store import Connection, instances, leases
from bridge.store.fragments import db_now

_TIME = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True, slots=True)
class LeaseView:
    """One lease as `status` shows it: times by the database's clock."""

    name: str
    holder: str
    token: int
    held: bool
    held_for: float  # seconds since the holder took it (while held)
    expires_in: float  # seconds left (negative: ran out that long ago)


@dataclass(frozen=True, slots=True)
class Status:
    instances: list[instances.InstanceRow]
    leases: list[LeaseView]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `status`."""
    status = subparsers.add_parser(
        "status",
        help="list the instances on the store and who holds each lease",
        description=(
            "List the daemons that use the store (alive or not, by their heartbeat) and the "
            "leases: each gateway account's poller and the processor, with the instance that "
            "holds each (reads the store only: safe beside running daemons)."
        ),
    )
    add_common(status)
    status.set_defaults(handler=cmd_status)


def read_status(conn: Connection) -> Status:
    now = db_now(conn)
    views = [
        LeaseView(
            lease.name,
            lease.holder,
            lease.token,
            lease.expires_at > now,
            max(now - lease.acquired_at, 0.0) if lease.expires_at > now else 0.0,
            lease.expires_at - now,
        )
        for lease in leases.all_leases(conn)
    ]
    return Status(instances.listing(conn), views)


async def cmd_status(args: argparse.Namespace) -> int:
    config: Path | None = args.config
    store = (await asyncio.to_thread(source.load_sections, config)).store

    def run() -> Status:
        with source.read_store(store) as conn:  # reads only: never migrates
            return read_status(conn)

    try:
        status = await asyncio.to_thread(run)
    except source.StoreTooOldError as exc:
        print(f"smsbridge {args.command}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.json:
        emit_json(status)
    else:
        emit_lines(_lines(status))
    return EXIT_OK


def _when(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime(_TIME)


def _lines(status: Status) -> list[str]:
    lines = ["instances:"]
    if not status.instances:
        lines.append("  none has run on this store yet")
    for row in status.instances:
        state = "alive" if row.alive else ("stopped" if row.stopped_at is not None else "dead")
        lines.append(
            f"  {row.id}  {state:<7}  listen {row.listen}  started {_when(row.started_at)}  "
            f"last seen {_when(row.seen_at)}"
        )
    lines.append("leases:")
    if not status.leases:
        lines.append("  none taken yet")
    for lease in status.leases:
        if lease.held:
            held = f"held by {lease.holder} for {lease.held_for:.0f} s"
            left = f"renewed, runs out in {lease.expires_in:.1f} s"
        else:
            held = f"free (last held by {lease.holder})"
            left = f"ran out {-lease.expires_in:.0f} s ago"
        lines.append(f"  {lease.name}  {held}  token {lease.token}  {left}")
    return lines
