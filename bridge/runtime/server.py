"""The HTTP face of the daemon: /hooks/<input>/..., /healthz, /readyz and /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import generate_latest

from bridge.metrics import Metrics
from bridge.plugin import Input
from bridge.runtime.forwarded import Networks, behind_proxy

Readiness = Callable[[], dict[str, str]]  # check name -> problem ('' when fine)
# The classic text format, which every Prometheus understands (Debian 12 ships 2.42).
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_TOO_SLOW = web.RequestKey("too_slow", bool)  # its body did not arrive in time


def _guard(timeout: float, log: Any, proxies: Networks = ()) -> Middleware:
    """One middleware (each layer costs every request) for three duties.

    A request forwarded by a trusted proxy (`server.trusted_proxies`) is seen as its client
    made it: its address, scheme and host from X-Forwarded-*; from anyone else those headers
    are ignored.

    Every HTTP error is answered with a JSON body that names the problem, and an unexpected
    exception with a JSON 500 (its traceback goes to the log, never to the client).

    The connection is closed when a request's body has not all arrived within `timeout`:
    aiohttp bounds the wait for a request's head (keepalive_timeout, armed from the moment a
    connection opens), but not the wait for its body once a handler reads it.
    """

    def too_slow(request: web.Request) -> None:
        if request.content.is_eof():
            return
        request[_TOO_SLOW] = True
        log.warning(
            "request_read_timeout", method=request.method, path=request.path, timeout=timeout
        )
        if request.transport is not None:
            request.transport.close()  # the handler's pending read fails; nothing is answered

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if proxies:
            request = behind_proxy(request, proxies)
        timer = None
        if request.body_exists and not request.content.is_eof():
            timer = asyncio.get_running_loop().call_later(timeout, too_slow, request)
            request.content.on_eof(timer.cancel)
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400 or exc.content_type == "application/json":
                raise
            message = {
                404: f"no such path {request.path}",
                405: f"method {request.method} not allowed on {request.path}",
                413: "request body too large",
            }.get(exc.status, exc.reason)
            headers = {k: v for k, v in exc.headers.items() if k.lower() != "content-type"}
            return web.json_response({"error": message}, status=exc.status, headers=headers)
        except Exception:
            if request.get(_TOO_SLOW):
                # The connection is closed already: whatever the handler hit, nobody is told.
                return web.Response(status=408)
            log.exception("request_failed", method=request.method, path=request.path)
            return web.json_response(
                {"error": "internal error; the daemon's log has the details"}, status=500
            )
        finally:
            if timer is not None:
                timer.cancel()

    return guard


class HookTable:
    """The inputs' routes, swappable as a whole when the config is reloaded."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], dict[str, web.RouteDef]] = {}

    def install(self, inputs: Mapping[str, Input[Any]]) -> None:
        routes: dict[tuple[str, str], dict[str, web.RouteDef]] = {}
        for name, plugin in inputs.items():
            for route in plugin.routes():
                routes.setdefault((name, route.path), {})[route.method] = route
        self._routes = routes  # one assignment: requests see the old table or the new one

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name, tail = request.match_info["name"], request.match_info["tail"]
        methods = self._routes.get((name, tail))
        if methods is None:
            raise web.HTTPNotFound()
        route = methods.get(request.method)
        if route is None:
            raise web.HTTPMethodNotAllowed(request.method, sorted(methods))
        return await route.handler(request)


def build_app(
    hooks: HookTable,
    metrics: Metrics,
    ready: Readiness,
    *,
    max_body: int,
    read_timeout: float,
    log: Any,
    before_scrape: Callable[[], Awaitable[None]] | None = None,
    trusted_proxies: Networks = (),
) -> web.Application:
    """One application for every input, plus the health and metrics endpoints.

    Serve it with `AppRunner(keepalive_timeout=read_timeout)`, which bounds the wait for each
    request's head; the middleware here bounds the wait for its body.
    """
    app = web.Application(
        client_max_size=max_body,
        middlewares=[_guard(read_timeout, log, trusted_proxies)],
    )
    app.router.add_route("*", r"/hooks/{name}{tail:(/.*)?}", hooks.handle)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(request: web.Request) -> web.Response:
        problems = {name: why for name, why in ready().items() if why}
        status = 200 if not problems else 503
        return web.json_response({"ready": not problems, "problems": problems}, status=status)

    async def metrics_page(request: web.Request) -> web.Response:
        if before_scrape is not None:
            await before_scrape()  # gauges read from the store are fresh at every scrape
        body = generate_latest(metrics.registry)
        response = web.Response(body=body)
        response.headers["Content-Type"] = METRICS_CONTENT_TYPE
        return response

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)
    return app
