"""The console's shared state and helpers: its config now, templates, sessions, notes, acting."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import quote, unquote

from aiohttp import web
from jinja2 import Environment, PackageLoader, select_autoescape

import bridge.console.audit as audit
import bridge.console.auth as auth
from bridge.config.console import ConsoleConfig
from bridge.console.context import ConsoleContext
from bridge.console.live import LiveHub
from bridge.sms import mask_text
from bridge.store import Connection

T = TypeVar("T")
SESSION = web.RequestKey("console_session", auth.Session)
CLIENT = web.RequestKey("console_client", auth.Client)
NOTE_COOKIE = "smsbridge_console_note"
_TIME = "%Y-%m-%d %H:%M:%S"
PAGES = (
    ("messages", "Messages"),
    ("incidents", "Incidents"),
    ("queue", "Queue"),
    ("conversations", "Conversations"),
    ("gateway", "Gateway"),
    ("rules", "Rules"),
    ("config", "Configuration"),
    ("audit", "Audit"),
)


class Console:
    """One console: what every handler reaches through `request.app[CONSOLE]`."""

    def __init__(
        self, context: ConsoleContext, config: ConsoleConfig, live_interval: float
    ) -> None:
        self.context = context
        self._started_config = config
        self.key = config.signing_key()
        self.trusted = auth.networks(config)
        self.hub = LiveHub(context.store, config.live_clients, live_interval, context.changes)
        # A login costs a tenth of a second of scrypt: a flood of them waits here, in turn,
        # rather than taking every worker thread the daemon has.
        self.logins = asyncio.Semaphore(2)
        self.templates = Environment(
            loader=PackageLoader("bridge.console", "templates"),
            autoescape=select_autoescape(default=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters["when"] = self.when
        self.templates.filters["masked"] = mask_text
        self.templates.filters["money"] = lambda value: f"{Decimal(value):.2f}"

    @property
    def config(self) -> ConsoleConfig:
        """The section in force: users and roles follow a reload; the listener does not."""
        return self.context.settings().config.console or self._started_config

    def when(self, value: datetime | float | None) -> str:
        if value is None:
            return ""
        if not isinstance(value, datetime):
            value = datetime.fromtimestamp(value).astimezone()
        return value.astimezone(self.context.settings().timezone).strftime(_TIME)

    # --- rendering -------------------------------------------------------------------------

    def render(
        self, request: web.Request, name: str, *, status: int = 200, **values: Any
    ) -> web.Response:
        session = request.get(SESSION)
        note = unquote(request.cookies.get(NOTE_COOKIE, ""))
        body = self.templates.get_template(name).render(
            session=session,
            csrf=auth.csrf_token(self.key, session.nonce) if session else "",
            nav=PAGES,
            simulator=self.context.simulator is not None,
            path=request.path,
            note=note,
            **values,
        )
        response = web.Response(text=body, status=status, content_type="text/html")
        if note:
            response.del_cookie(NOTE_COOKIE, path=auth.PATH)
        return response

    def back(self, request: web.Request, location: str, note: str) -> web.HTTPSeeOther:
        """Post/redirect/get, with what the action did shown once on the next page."""
        redirect = web.HTTPSeeOther(location)
        auth.set_cookie(
            redirect,
            NOTE_COOKIE,
            quote(note[:300]),
            https=request[CLIENT].https,
            age=60,
        )
        return redirect

    # --- acting ------------------------------------------------------------------------------

    async def act(
        self,
        request: web.Request,
        action: str,
        target: str,
        work: Callable[[Connection, float], str],
    ) -> str:
        """Run `work` in one store transaction with its audit entry; returns what it did."""
        session, client = request[SESSION], request[CLIENT]
        now = self.context.clock()

        def run(conn: Connection) -> str:
            outcome = work(conn, now)
            entry = audit.Entry(
                0, now, session.user, session.role.value, action, target, outcome, client.remote
            )
            audit.record(conn, entry)
            return outcome

        outcome = await self.context.store.write(run)
        if self.context.changes is not None:
            self.context.changes.changed()  # pages on other instances (SQLite: the file tells)
        self.context.log.info(
            "console_action", user=session.user, action=action, target=target, outcome=outcome
        )
        return outcome

    async def record(self, request: web.Request, user: str, role: str, action: str) -> None:
        """An audit entry of its own (logins and logouts)."""
        now = self.context.clock()
        entry = audit.Entry(0, now, user, role, action, "", "", request[CLIENT].remote)
        await self.context.store.write(lambda conn: audit.record(conn, entry))

    def login_nonce(self) -> str:
        return secrets.token_urlsafe(16)


CONSOLE_KEY = web.AppKey("console", Console)
