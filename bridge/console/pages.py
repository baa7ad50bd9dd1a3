"""The console's pages, read from the store: messages, incidents, queue, conversations, gateway,
configuration (redacted), the audit log and the simulated phones."""

from __future__ import annotations

from typing import Any

import yaml
from aiohttp import web
from pydantic import BaseModel

import bridge.console.audit as audit
import bridge.console.queries as queries
from bridge.commands.history import views
from bridge.config import parse_duration
from bridge.console.context import ConsoleSettings
from bridge.console.core import CONSOLE_KEY
from bridge.logging import SCRUBBER
from bridge.paging import Incident, get_incident
from bridge.sms import InvalidNumberError, normalize_number
from bridge.store import Connection

PAGE = 50
HIDDEN = "**********"  # how pydantic shows a secret


def _number(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() and len(text) < 19 else None


async def messages(request: web.Request) -> web.Response:
    console = request.app[CONSOLE_KEY]
    query = request.query
    states = [name for name in query.getall("state", []) if name in views.STATES]
    problems: list[str] = []
    since = None
    if query.get("since"):
        try:
            since = console.context.clock() - parse_duration(query["since"]).total_seconds()
        except ValueError:
            problems.append(
                f"since: expected a duration like 30m, 1h or 2d, got {query['since']!r}"
            )
    recipients: list[str] = []
    wanted = query.get("to", "").strip()
    if wanted:
        contact = console.context.settings().config.contacts.get(wanted)
        try:
            recipients.append(contact.number if contact else normalize_number(wanted))
        except InvalidNumberError:
            problems.append(f"to: {wanted!r} is neither a contact nor a number")
    before = _number(query.get("before"))

    def read(conn: Connection) -> list[views.Message]:
        if problems:
            return []
        return views.messages(
            conn, since=since, recipients=recipients, states=states, before=before, limit=PAGE
        )

    found = await console.context.store.read(read)
    more = found[-1].id if len(found) == PAGE else None
    return console.render(
        request,
        "messages.html",
        messages=found,
        states=list(views.STATES),
        chosen=states,
        since=query.get("since", ""),
        to=wanted,
        problems=problems,
        more=more,
        live=before is None,
    )


async def message(request: web.Request) -> web.Response:
    console = request.app[CONSOLE_KEY]
    job_id = _number(request.match_info["id"])
    found = await console.context.store.read(
        lambda conn: queries.timeline(conn, job_id) if job_id is not None else None
    )
    if found is None:
        raise web.HTTPNotFound(text=f"no message {request.match_info['id']}")
    return console.render(request, "message.html", t=found, live=True)


async def incidents(request: web.Request) -> web.Response:
    console = request.app[CONSOLE_KEY]

    def read(conn: Connection) -> tuple[list[views.OpenIncident], list[Incident | None]]:
        rows = conn.execute(
            "SELECT id FROM incidents WHERE state = 'resolved' ORDER BY id DESC LIMIT 20"
        ).fetchall()
        return views.incidents(conn), [get_incident(conn, row["id"]) for row in rows]

    found, resolved = await console.context.store.read(read)
    return console.render(request, "incidents.html", incidents=found, resolved=resolved, live=True)


async def incident(request: web.Request) -> web.Response:
    console = request.app[CONSOLE_KEY]
    number = _number(request.match_info["id"])

    def read(conn: Connection) -> tuple[Incident | None, list[queries.PageSent]]:
        if number is None:
            return None, []
        return get_incident(conn, number), queries.pages(conn, number)

    found, pages = await console.context.store.read(read)
    if found is None:
        raise web.HTTPNotFound(text=f"no incident {request.match_info['id']}")
    return console.render(request, "incident.html", incident=found, pages=pages, live=True)


async def queue(request: web.Request) -> web.Response:
    console = request.app[CONSOLE_KEY]
    after = _number(request.query.get("after"))

    def read(conn: Connection) -> tuple[list[views.Waiting], list[views.AccountPause]]:
        return views.queue(conn, after=after, limit=PAGE), views.pauses(conn)

    waiting, paused = await console.context.store.read(read)
    more = waiting[-1].id if len(waiting) == PAGE else None
    return console.render(
        request, "queue.html", waiting=waiting, paused=paused, more=more, live=after is None
    )


async def conversations(request: web.Request) -> web.Response:
    console = request.app[CONSOLE_KEY]
    now = console.context.clock()
    found = await console.context.store.read(lambda conn: queries.conversations(conn, now))
    return console.render(request, "conversations.html", conversations=found, live=True)


async def gateway(request: web.Request) -> web.Response:
    console = request.app[CONSOLE_KEY]
    context = console.context
    now = context.clock()
    state = await context.store.read(
        lambda conn: queries.gateway(conn, context.sms_output, context.pipeline.storm, now)
    )
    peak = max((value for _, value in state.balances), default=0)
    return console.render(request, "gateway.html", gw=state, peak=peak, live=True)


def _dump(model: BaseModel) -> Any:
    # Secrets dump as '**********'; numbers and any secret that slipped through are masked after.
    return model.model_dump(mode="json", exclude_none=True)


def redacted_config(settings: ConsoleSettings) -> str:
    """The configuration in force as YAML: secrets starred, numbers masked, nothing written back."""
    config = settings.config
    document: dict[str, Any] = _dump(config)
    for section, built in (("inputs", settings.inputs), ("outputs", settings.outputs)):
        document[section] = {
            name: {"type": getattr(config, section)[name].type, **_dump(options)}
            for name, (_, options) in built.items()
        }
    if "console" in document:
        for user in document["console"].get("users", {}).values():
            if "password_hash" in user:
                user["password_hash"] = HIDDEN
    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    return SCRUBBER.scrub(text)


async def config(request: web.Request) -> web.Response:
    console = request.app[CONSOLE_KEY]
    return console.render(request, "config.html", text=redacted_config(console.context.settings()))


async def audit_log(request: web.Request) -> web.Response:
    console = request.app[CONSOLE_KEY]
    before = _number(request.query.get("before"))
    found = await console.context.store.read(lambda conn: audit.recent(conn, before=before))
    more = found[-1].id if len(found) == 100 else None
    return console.render(request, "audit.html", entries=found, more=more)


async def phones(request: web.Request) -> web.Response:
    console = request.app[CONSOLE_KEY]
    state = console.context.simulator
    if state is None:
        raise web.HTTPNotFound(text="phones exist only with the built-in simulator")
    found = queries.phones(state, console.context.settings().config.contacts)
    return console.render(request, "phones.html", phones=found, live=True)
