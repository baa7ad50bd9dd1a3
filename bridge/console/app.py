"""The console's web application on a listener of its own: sessions, CSRF and roles checked in
one middleware, then the pages; started and stopped with the daemon."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import quote

from aiohttp import web
from aiohttp.typedefs import Handler

import bridge.console.actions as actions
import bridge.console.auth as auth
import bridge.console.pages as pages
import bridge.console.rules as rules
from bridge.config.console import ConsoleConfig
from bridge.console.context import ConsoleContext
from bridge.console.core import CLIENT, CONSOLE_KEY, SESSION, Console
from bridge.plugin import StoreUnavailableError

STATIC = Path(__file__).parent / "static"
OPEN = ("/console/login", "/console/static/")  # served without a session
SECURITY_HEADERS = {
    # Only our own script and style: an injected <script> would not run.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Who asks, whether they may, and an HTML page (never a traceback) when something fails."""
    console = request.app[CONSOLE_KEY]
    request[CLIENT] = auth.client(request, console.trusted)
    started = time.perf_counter()
    try:
        response = await _checked(request, handler, console)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = console.render(
            request, "error.html", status=exc.status, message=exc.text or exc.reason
        )
        for name in ("Retry-After", "Allow"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
    except StoreUnavailableError:
        console.context.log.exception("console_request_failed", path=request.path)
        response = console.render(
            request, "error.html", status=503, message="the store cannot take writes now"
        )
    except Exception:
        console.context.log.exception("console_request_failed", path=request.path)
        response = console.render(
            request, "error.html", status=500, message="internal error; see the daemon's log"
        )
    if not response.prepared:  # a live stream's headers are gone already
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        # The server's own time for the page, as browsers' developer tools show it.
        elapsed = (time.perf_counter() - started) * 1000
        response.headers["Server-Timing"] = f"app;dur={elapsed:.1f}"
    return response


async def _checked(request: web.Request, handler: Handler, console: Console) -> web.StreamResponse:
    if request.path.startswith(OPEN):
        return await handler(request)
    if request.path != "/console" and not request.path.startswith("/console/"):
        raise web.HTTPNotFound(text=f"no such page {request.path}")
    cookie = request.cookies.get(auth.COOKIE, "")
    session = auth.unseal(console.key, cookie, console.config, console.context.clock())
    if session is None:
        if request.method in ("GET", "HEAD"):
            raise web.HTTPSeeOther(f"/console/login?next={quote(request.path_qs)}")
        raise web.HTTPUnauthorized(text="log in first: no valid session")
    request[SESSION] = session
    if request.method not in ("GET", "HEAD"):
        sent = request.headers.get(auth.CSRF_HEADER, "")
        if not sent and request.content_type in (
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ):
            sent = str((await request.post()).get(auth.CSRF_FIELD, ""))
        if not auth.csrf_ok(console.key, session.nonce, sent):
            raise web.HTTPForbidden(
                text="the form's CSRF token is missing or wrong: reload the page"
            )
    return await handler(request)


async def _home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther("/console/messages")


def build_app(console: Console) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=256 * 1024)
    app[CONSOLE_KEY] = console
    r = app.router
    r.add_get("/console", _home)
    r.add_get("/console/", _home)
    r.add_get("/console/login", actions.login_form)
    r.add_post("/console/login", actions.login)
    r.add_post("/console/logout", actions.logout)
    r.add_get("/console/messages", pages.messages)
    r.add_get("/console/messages/{id}", pages.message)
    r.add_get("/console/incidents", pages.incidents)
    r.add_get("/console/incidents/{id}", pages.incident)
    r.add_post(r"/console/incidents/{id}/{verb:ack|close}", actions.incident_action)
    r.add_get("/console/queue", pages.queue)
    r.add_post(r"/console/jobs/{id}/{verb:retry|cancel|release}", actions.job_action)
    r.add_get("/console/conversations", pages.conversations)
    r.add_get("/console/gateway", pages.gateway)
    r.add_get("/console/rules", rules.rules_form)
    r.add_post("/console/rules", rules.dry_run)
    r.add_get("/console/config", pages.config)
    r.add_get("/console/audit", pages.audit_log)
    r.add_get("/console/phones", pages.phones)
    r.add_post("/console/phones", actions.phone_reply)
    r.add_get("/console/events", console.hub.stream)
    r.add_static("/console/static/", STATIC)
    return app


class ConsoleServer:
    """The console listening on `console.listen`; `stop` ends live streams first."""

    def __init__(
        self, context: ConsoleContext, config: ConsoleConfig, *, live_interval: float = 1.0
    ) -> None:
        self.console = Console(context, config, live_interval)
        self.config = config
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self, shutdown_timeout: float) -> None:
        runner = web.AppRunner(
            build_app(self.console), access_log=None, shutdown_timeout=shutdown_timeout
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, self.config.host, self.config.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{port}/console"
        self.console.hub.start()

    async def stop(self) -> None:
        await self.console.hub.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
