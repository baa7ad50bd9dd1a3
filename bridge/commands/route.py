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
from decimal import Decimal
from pathlib import Path
from typing import Any

from bridge.commands.common import EXIT_OK, EXIT_USAGE
from bridge.commands.output import emit_json, emit_lines
from bridge.events import Event, Status
from bridge.outbox import jobs as outbox
from bridge.paging import NobodyOnCall, escalation_timeline
from bridge.rules import Decision, Directory
from bridge.runtime import Settings, load_settings
from bridge.sms import mask_number, segment_count
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


def _recipient_state(conn: Connection | None, decision: Decision, number: str, now: float) -> str:
    action = decision.sms
    assert action is not None
    event = decision.event
    window = action.repeat_interval.total_seconds()
    if conn is not None and window and event.fingerprint:
        key = f"repeat|{decision.rule}|{event.fingerprint}|{number}|{event.status.value}"
        row = conn.execute("SELECT expires_at FROM dedupe WHERE key = ?", (key,)).fetchone()
        if row is not None and row["expires_at"] > now:
            return f"suppressed: sent within repeat_interval ({action.repeat_interval})"
    if action.group_wait.total_seconds():
        return f"grouped: joins a summary sent {action.group_wait} after the group's first alert"
    if conn is not None and action.cap_per_hour:
        recent = outbox.sends_since(conn, action.output, number, now - 3600)
        if recent >= max(action.cap_per_hour - 1, 1):
            return f"held back: cap {action.cap_per_hour}/h reached ({recent} in the last hour)"
    return (
        "would send" if conn is not None else "would send (no outbox yet: nothing to repeat or cap)"
    )


def _pending_members(conn: Connection | None, decision: Decision) -> list[Event]:
    """The alerts already waiting in the event's group (any recipient), oldest first."""
    if conn is None:
        return []
    rows = conn.execute(
        """SELECT DISTINCT event_id FROM group_members WHERE rule = ? AND group_key = ?
           ORDER BY event_id""",
        (decision.rule, decision.group_key()),
    ).fetchall()
    return [e for e in (outbox.get_event(conn, row["event_id"]) for row in rows) if e]


def _offset_text(offset: timedelta) -> str:
    minutes, seconds = divmod(int(offset.total_seconds()), 60)
    return f"+{minutes}m{seconds:02d}s" if seconds else f"+{minutes}m"


def _paging(decision: Decision, settings: Settings, at: datetime) -> dict[str, Any] | None:
    """The incident a paging rule would open and who it pages when, if nobody acknowledges."""
    if decision.page is None:
        return None
    name = decision.page.policy
    item: dict[str, Any] = {"policy": name, "incident": decision.group_key()}
    oncall = settings.config.oncall
    policy = oncall.policies.get(name) if oncall is not None else None
    if decision.event.status is Status.RESOLVED or policy is None or oncall is None:
        # `check` refuses an unknown policy; a resolution only closes the incident.
        item["resolves"] = decision.event.status is Status.RESOLVED
        item["timeline"] = []
        return item
    directory = Directory(settings.config.contacts, settings.config.groups)
    timeline: list[dict[str, Any]] = []
    for entry in escalation_timeline(policy, directory, oncall.schedules, at):
        line: dict[str, Any] = {
            "offset_seconds": entry.offset.total_seconds(),
            "at": (at + entry.offset).astimezone(settings.timezone),
            "step": entry.step + 1,
            "pass": entry.pass_index + 1,
        }
        if isinstance(entry, NobodyOnCall):
            line["nobody_on_call"] = entry.schedule
        else:
            line["targets"] = [
                {"name": t.name, "number": mask_number(t.number), "via": t.via}
                for t in entry.targets
            ]
        timeline.append(line)
    item["steps"] = len(policy.steps)
    item["repeat"] = policy.repeat
    timeout = policy.ack_timeout
    item["ack_timeout_seconds"] = timeout.total_seconds() if timeout is not None else None
    item["pages"] = sum(len(line.get("targets", ())) for line in timeline)
    item["resolves"] = False
    item["timeline"] = timeline
    return item


def _describe(
    decision: Decision,
    settings: Settings,
    conn: Connection | None,
    now: float,
    at: datetime,
) -> dict[str, Any]:
    item: dict[str, Any] = {"rule": decision.rule}
    price = settings.config.gateway.segment_price if settings.config.gateway else Decimal("0.10")
    if decision.sms is not None:
        sms = decision.sms
        grouped = sms.group_wait > timedelta(0)
        if grouped:
            # What the group's flush sends: the summary of the alerts waiting and this one.
            members = [*_pending_members(conn, decision), decision.event]
            rendered = settings.rules.render_group_result(decision.rule, members, at)
        else:
            rendered = decision.rendered("sms")
        segments = segment_count(rendered.text, settings.signature)
        item["sms"] = {
            "output": sms.output,
            "grouped": grouped,
            "text": rendered.text,
            "template_error": rendered.error,
            "segments": segments,
            "cost_per_number": str(price * segments),
            "wanted": sms.wants(decision.event),
            "recipients": [
                {
                    "name": r.name,
                    "number": mask_number(r.number),
                    "outcome": _recipient_state(conn, decision, r.number, now),
                }
                for r in sms.recipients
            ],
        }
    if decision.post is not None:
        target = decision.post.output or "the event's conversation"
        item["post"] = {"to": target, "text": decision.render("post")}
    paging = _paging(decision, settings, at)
    if paging is not None:
        item["page"] = paging
    return item


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
        decisions = settings.rules.evaluate(event, at)
        report = {
            "event": {
                "kind": event.kind.value,
                "source": event.source,
                "status": event.status.value,
                "labels": dict(event.labels),
            },
            "rules": _rule_lines(settings.rules.explain(event, at), decisions),
            "decisions": [_describe(d, settings, conn, now, at) for d in decisions],
        }
    if args.json:
        emit_json(report)
    else:
        emit_lines(_lines(report))
    return EXIT_OK


def _rule_lines(
    explained: list[tuple[str, str | None]], decisions: list[Decision]
) -> list[dict[str, Any]]:
    """Each rule, whether it matches, and for one that matches but is never reached, which
    rule stops the evaluation before it (the last decision: it has no `continue: true`)."""
    decided = {decision.rule for decision in decisions}
    stopper = decisions[-1].rule if decisions else None
    rules: list[dict[str, Any]] = []
    for name, why in explained:
        shadowed = why is None and name not in decided
        rules.append(
            {
                "rule": name,
                "matched": why is None,
                "why_not": why,
                "shadowed_by": stopper if shadowed else None,
            }
        )
    return rules


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
        people = ", ".join(f"{t['name']} ({t['number']}, {t['via']})" for t in line["targets"])
        lines.append(f"{when} {people}")
    return lines
