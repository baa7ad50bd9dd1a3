"""`smsbridge page --test POLICY`: walk an escalation policy end to end, printing each step as it
happens, on the built-in simulator (or the real gateway with --live), so a team can rehearse it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from bridge.commands.common import EXIT_OK, EXIT_USAGE
from bridge.events import Event, EventKind
from bridge.paging import NobodyOnCall, escalation_timeline
from bridge.plugins.c123.simulator import SimulatorSettings
from bridge.rules import Directory, RuleConfig, RuleSet
from bridge.runtime import Daemon, Settings, load_settings
from bridge.sms import mask_number
from bridge.store import Connection

RULE = "page-test"
POLL = 0.2  # seconds between looks at the rehearsal's store


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    page = subparsers.add_parser(
        "page",
        help="rehearse an escalation policy end to end",
        description=(
            "Open a test incident on POLICY and walk it as the daemon would: who is paged at each "
            "step, delivery reports, failovers, until someone acknowledges (by SMS reply) or every "
            "step and repeat went unanswered. Runs a private daemon on a throw-away store, with "
            "the built-in simulator standing in for the gateway; with --live, real SMS go "
            "through the configured gateway (stop the running daemon's polling first: reply "
            "and report reads are destructive, and this walk would take them)."
        ),
    )
    page.add_argument("--test", required=True, metavar="POLICY", help="the policy to walk")
    page.add_argument("-c", "--config", type=Path, metavar="FILE", help="config file")
    page.add_argument("--live", action="store_true", help="send real SMS through the gateway")
    page.add_argument(
        "--severity", default="critical", help="the test alert's severity (default: critical)"
    )
    page.set_defaults(handler=cmd_page)


def rehearsal(settings: Settings, policy: str, store: Path, live: bool) -> Settings:
    """The settings of a private daemon for the walk: a store of its own, no inputs, a port of
    its own, one rule paging POLICY; the simulator and no chat unless `live`."""
    config = settings.config
    rule = RuleConfig.model_validate(
        {"name": RULE, "match": {"kind": "alert"}, "page": {"policy": policy}}
    )
    conversations = (
        config.conversations if live else config.conversations.model_copy(update={"default": None})
    )
    changed = config.model_copy(
        update={
            "server": config.server.model_copy(update={"listen": "127.0.0.1:0"}),
            "store": config.store.model_copy(update={"path": store}),
            "gateway": config.gateway if live else None,
            "inputs": {},
            "outputs": config.outputs if live else {},
            "rules": [rule],
            "conversations": conversations,
            "simulator": config.simulator.model_copy(update={"port": 0}),
        }
    )
    rules = RuleSet.build(
        [rule], config.contacts, config.groups, settings.timezone, settings.signature
    )
    return replace(
        settings,
        config=changed,
        inputs={},
        outputs=settings.outputs if live else {},
        rules=rules,
    )


def _pages(conn: Connection) -> list[dict[str, Any]]:
    rows = conn.execute(
        """SELECT p.id, p.name, p.mobile, p.code, p.step, p.pass_index, p.status, p.paged_at,
                  j.state AS job
           FROM incident_pages p LEFT JOIN jobs j ON j.id = p.job_id ORDER BY p.id"""
    ).fetchall()
    return [dict(row) for row in rows]


def _incident(conn: Connection) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT id, state, acked_by, resolved_by, position, timeline FROM incidents"
    ).fetchone()
    return dict(row) if row else None


class Walk:
    """Prints what changed in the rehearsal's store since the last look."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.seen: dict[int, tuple[str, str | None]] = {}

    def say(self, text: str) -> None:
        elapsed = int(time.time() - self.started)
        print(f"+{elapsed // 60}m{elapsed % 60:02d}s {text}", flush=True)

    def look(self, pages: list[dict[str, Any]]) -> None:
        for page in pages:
            now = (page["status"], page["job"])
            before = self.seen.get(page["id"])
            who = f"{page['name']} ({mask_number(page['mobile'])})"
            if before is None:
                self.say(
                    f"pass {page['pass_index'] + 1} step {page['step'] + 1}: paged {who}, "
                    f"code {page['code']} ({page['code']}a acknowledges)"
                )
            if page["job"] == "sent" and (before is None or before[1] != "sent"):
                self.say(f"  the page to {who} reached the gateway")
            if page["status"] != "pending" and (before is None or before[0] != page["status"]):
                self.say(f"  delivery to {who}: {page['status']}")
            self.seen[page["id"]] = now


def _timeline_lines(settings: Settings, policy: str, start: datetime) -> list[str]:
    oncall = settings.config.oncall
    assert oncall is not None
    directory = Directory(settings.config.contacts, settings.config.groups)
    lines = []
    for entry in escalation_timeline(oncall.policies[policy], directory, oncall.schedules, start):
        seconds = int(entry.offset.total_seconds())
        head = f"  +{seconds // 60}m{seconds % 60:02d}s pass {entry.pass_index + 1} "
        head += f"step {entry.step + 1}:"
        if isinstance(entry, NobodyOnCall):
            lines.append(f"{head} nobody on call in {entry.schedule}")
        else:
            lines.append(f"{head} {', '.join(t.name for t in entry.targets)}")
    return lines


async def walk(daemon: Daemon, policy: str, severity: str) -> int:
    """Open the test incident and print its walk until it ends."""
    started = time.time()
    print(f"the plan if nobody acknowledges ({policy}):", flush=True)
    for line in _timeline_lines(daemon.settings, policy, datetime.fromtimestamp(started, UTC)):
        print(line, flush=True)
    event = Event(
        EventKind.ALERT,
        "page-test",
        labels={"alertname": f"PageTest-{policy}", "severity": severity},
        text=f"smsbridge page --test {policy}: a rehearsal, no action needed",
        fingerprint=f"page-test|{policy}|{started}",
    )
    await daemon.processor.run_events([event])
    progress = Walk(started)
    while True:
        pages, incident = await daemon.store.read(lambda c: (_pages(c), _incident(c)))
        progress.look(pages)
        if incident is None:
            progress.say("no incident was opened: is the policy's paging configured?")
            return EXIT_USAGE
        if incident["state"] == "acknowledged":
            progress.say(f"acknowledged by {incident['acked_by'] or 'someone'}: paging stopped")
            return EXIT_OK
        if incident["state"] == "resolved":
            progress.say(f"closed by {incident['resolved_by'] or 'someone'}: paging stopped")
            return EXIT_OK
        if incident["position"] > len(_entries(incident["timeline"])):
            progress.say("nobody acknowledged after every step and repeat: PageUnanswered raised")
            return EXIT_OK
        await asyncio.sleep(POLL)


def _entries(timeline: str | None) -> list[Any]:
    found: list[Any] = json.loads(timeline or "[]")
    return found


async def cmd_page(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    oncall = settings.config.oncall
    policies = oncall.policies if oncall is not None else {}
    if args.test not in policies:
        defined = ", ".join(sorted(policies)) or "none"
        print(f"smsbridge page: unknown policy {args.test!r} (defined: {defined})", file=sys.stderr)
        return EXIT_USAGE
    if args.live and settings.config.gateway is None:
        print("smsbridge page: --live needs a gateway section", file=sys.stderr)
        return EXIT_USAGE
    where = "the configured gateway: real SMS" if args.live else "the built-in simulator"
    print(f"rehearsing policy {args.test} on {where}; Ctrl-C stops", flush=True)
    with tempfile.TemporaryDirectory(prefix="smsbridge-page-") as folder:
        private = rehearsal(settings, args.test, Path(folder) / "rehearsal.sqlite3", args.live)
        quiet = structlog.wrap_logger(structlog.ReturnLogger())  # the walk prints its own lines
        simulated = None if args.live else SimulatorSettings(report_delay=0, rate_limit=None)
        daemon = Daemon(private, simulator_settings=simulated, log=quiet)
        await daemon.start()
        try:
            return await walk(daemon, args.test, args.severity)
        finally:
            with contextlib.suppress(Exception):  # the walk's outcome stands; the store goes
                await daemon.stop()
