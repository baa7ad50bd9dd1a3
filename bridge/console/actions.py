"""What people do in the console: log in and out, acknowledge and close incidents, retry,
cancel and release messages, reply from a simulated phone. Each is audited in its transaction."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

from aiohttp import web

import bridge.console.auth as auth
import bridge.console.queries as queries
import bridge.outbox as outbox
from bridge.console.core import CLIENT, CONSOLE_KEY, SESSION
from bridge.paging import Pager
from bridge.sms import mask_number
from bridge.store import Connection

LOGIN_PAGE = "/console/login"
POLL_WAIT = 5.0  # seconds a phone reply waits for the gateway to be asked for replies


def _next(value: str) -> str:
    """Where to go after logging in: a console path only (never another site)."""
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not parts.path.startswith("/console"):
        return "/console/messages"
    return value


async def login_form(request: web.Request) -> web.Response:
    console = request.app[CONSOLE_KEY]
    # Kept when there is one: a second load of the form (another tab, a browser fetching
    # /favicon.ico through the redirect) must not void the form already shown.
    nonce = request.cookies.get(auth.LOGIN_COOKIE, "")
    if len(nonce) < 16:
        nonce = console.login_nonce()
    response = console.render(
        request,
        "login.html",
        login_csrf=auth.csrf_token(console.key, nonce),
        next=_next(request.query.get("next", "")),
        failed=False,
    )
    auth.set_cookie(response, auth.LOGIN_COOKIE, nonce, https=request[CLIENT].https, age=3600)
    return response


async def login(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE_KEY]
    form = await request.post()
    nonce = request.cookies.get(auth.LOGIN_COOKIE, "")
    if not nonce or not auth.csrf_ok(console.key, nonce, str(form.get(auth.CSRF_FIELD, ""))):
        raise web.HTTPForbidden(text="the login form expired or was not ours: reload it")
    user, secret = str(form.get("user", "")), str(form.get("password", ""))
    config = console.config
    # scrypt takes a tenth of a second of CPU: off the event loop.
    async with console.logins:
        role = await asyncio.to_thread(auth.check_login, config, user, secret)
    if role is None:
        await console.record(request, user[:64], "", "login_failed")
        return console.render(
            request,
            "login.html",
            status=401,
            login_csrf=auth.csrf_token(console.key, nonce),
            next=_next(str(form.get("next", ""))),
            failed=True,
        )
    await console.record(request, user, role.value, "login")
    ttl = int(config.session_ttl.total_seconds())
    cookie = auth.seal(console.key, user, role, console.context.clock() + ttl)
    redirect = web.HTTPSeeOther(_next(str(form.get("next", ""))))
    auth.set_cookie(redirect, auth.COOKIE, cookie, https=request[CLIENT].https, age=ttl)
    redirect.del_cookie(auth.LOGIN_COOKIE, path=auth.PATH)
    raise redirect


async def logout(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE_KEY]
    session = request[SESSION]
    await console.record(request, session.user, session.role.value, "logout")
    redirect = web.HTTPSeeOther(LOGIN_PAGE)
    redirect.del_cookie(auth.COOKIE, path=auth.PATH)
    raise redirect


def _operator(request: web.Request) -> None:
    if not request[SESSION].operator:
        raise web.HTTPForbidden(text="viewers may look, not act: this needs the operator role")


def _id(request: web.Request) -> int:
    text = request.match_info["id"]
    if not text.isdigit() or len(text) > 18:
        raise web.HTTPNotFound(text=f"no such id {text}")
    return int(text)


async def incident_action(request: web.Request) -> web.StreamResponse:
    """Acknowledge or close, through the same paging action as `sms ack N` in chat."""
    _operator(request)
    console = request.app[CONSOLE_KEY]
    verb, number = request.match_info["verb"], _id(request)
    location = f"/console/incidents/{number}"
    pipeline = console.context.pipeline
    pager = pipeline.paging
    if not isinstance(pager, Pager):
        raise console.back(request, location, "paging is not configured (no oncall section)")
    touched: set[str] = set()
    who = request[SESSION].user

    def work(conn: Connection, now: float) -> str:
        touched.clear()
        _, answer = pager.chat(conn, verb, number, who, None, now, touched)
        return answer

    action = "acknowledge" if verb == "ack" else "close"
    try:
        answer = await console.act(request, action, f"incident #{number}", work)
    except BaseException:
        pipeline.notes.clear()
        raise
    pipeline.flush_log(console.context.log)
    pipeline.wake(touched)
    raise console.back(request, location, answer)


async def job_action(request: web.Request) -> web.StreamResponse:
    _operator(request)
    console = request.app[CONSOLE_KEY]
    verb, job_id = request.match_info["verb"], _id(request)
    who = request[SESSION].user
    back = request.query.get("back", "")
    location = back if back in ("queue", "messages") else f"messages/{job_id}"
    output: list[str] = []

    def work(conn: Connection, now: float) -> str:
        try:
            if verb == "retry":
                done = outbox.retry_job(conn, job_id, now, f"retried by {who}")
            elif verb == "cancel":
                done = outbox.cancel_job(conn, job_id, now, f"cancelled by {who}")
            else:
                done = outbox.release_job(conn, job_id, now)
        except outbox.JobActionError as exc:
            return str(exc)
        output.append(done.output)
        return done.done

    answer = await console.act(request, verb, f"job #{job_id}", work)
    console.context.pipeline.wake(output)
    raise console.back(request, f"/console/{location}", answer)


async def phone_reply(request: web.Request) -> web.StreamResponse:
    """Reply from a simulated phone, as its owner would: the gateway queues it for getReply."""
    _operator(request)
    console = request.app[CONSOLE_KEY]
    state = console.context.simulator
    if state is None:
        raise web.HTTPNotFound(text="phones exist only with the built-in simulator")
    form = await request.post()
    text = str(form.get("text", "")).strip()
    mobile = queries.phone_number(
        state, console.context.settings().config.contacts, str(form.get("phone", ""))
    )
    if mobile is None or not text:
        raise console.back(request, "/console/phones", "choose a phone and write a reply")

    try:
        state.inject_reply(mobile, text[:500])
    except ValueError as exc:  # the simulator's InvalidInput: text XML cannot carry
        raise console.back(request, "/console/phones", f"not sent: {exc}") from None
    await console.act(request, "reply", mask_number(mobile), lambda conn, now: "replied")
    poll = console.context.poll_replies
    if poll is not None:
        # Fetched now rather than at the next scheduled poll, so the tour moves on at once.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(poll(), POLL_WAIT)
    raise console.back(request, "/console/phones", f"replied from {mask_number(mobile)}")
