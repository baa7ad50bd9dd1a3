"""The rules page: paste an event, see which rules match, what would be sent to whom, and the
escalation timeline if nobody acknowledges: `smsbridge route`'s dry run. It never sends."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bridge.commands import dryrun
from bridge.console.core import CONSOLE_KEY
from bridge.events import Event
from bridge.store import Connection

EXAMPLE = {
    "kind": "alert",
    "source": "alertmanager",
    "status": "firing",
    "labels": {"alertname": "DiskFull", "severity": "critical", "instance": "db1"},
    "text": "Disk /var is 97% full on db1",
    "fingerprint": "diskfull-db1",
}
MAX_EVENT = 64 * 1024  # characters of pasted JSON


async def rules_form(request: web.Request) -> web.Response:
    console = request.app[CONSOLE_KEY]
    return console.render(
        request, "rules.html", event=json.dumps(EXAMPLE, indent=2), at="", report=None, problem=""
    )


def _event(text: str) -> Event:
    if len(text) > MAX_EVENT:
        raise ValueError(f"the event is longer than {MAX_EVENT} characters")
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object with kind, source, labels, text, status")
    return Event.from_json(data)


async def dry_run(request: web.Request) -> web.Response:
    console = request.app[CONSOLE_KEY]
    form = await request.post()
    text, at_text = str(form.get("event", "")), str(form.get("at", "")).strip()
    settings = console.context.settings()
    report: dict[str, Any] | None = None
    problem = ""
    try:
        event = _event(text)
        at = datetime.fromisoformat(at_text) if at_text else datetime.now(UTC)
        if at.tzinfo is None:
            at = at.replace(tzinfo=settings.timezone)
    except (ValueError, KeyError, TypeError) as exc:
        problem = f"cannot read the event: {exc}"
    else:
        now = at.timestamp() if at_text else console.context.clock()

        def run(conn: Connection) -> dict[str, Any]:
            return dryrun.report(settings, conn, event, at, now)

        report = await console.context.store.read(run)
    return console.render(
        request,
        "rules.html",
        status=200 if not problem else 400,
        event=text,
        at=at_text,
        report=report,
        problem=problem,
    )
