"""The simulated gateway over HTTP: the two endpoints, faults, and the JSON admin API (/_sim/)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from types import TracebackType
from typing import Self
from urllib.parse import parse_qsl

import structlog
from aiohttp import web

from bridge.plugins.c123.models import Action
from bridge.plugins.c123.simulator.config import (
    Fault,
    FaultKind,
    InvalidInput,
    MalformedVariant,
    SimulatorSettings,
    member_of,
)
from bridge.plugins.c123.simulator.state import GatewayState, SimMessage
from bridge.plugins.c123.simulator.timing import Clock, Monotonic
from bridge.plugins.c123.simulator.wire import forced_code, malformed, money_text, render

log = structlog.get_logger()

STATE = web.AppKey("state", GatewayState)
# A sendBatch of 100 texts of 1000 Chinese characters, percent-encoded, is about 900 KB.
MAX_BODY = 8 * 1024 * 1024
SHUTDOWN_SECONDS = 1.0
# How often a held answer looks whether its caller hung up.
_HANG_UP_POLL = 0.02

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_app(state: GatewayState) -> web.Application:
    """The aiohttp application serving one simulated gateway's state."""
    app = web.Application(client_max_size=MAX_BODY, middlewares=[_admin_errors])
    app[STATE] = state
    for path in sorted({action.path for action in Action}):
        app.router.add_get(path, _gateway(path), allow_head=False)
        app.router.add_post(path, _gateway(path))
    app.router.add_get("/_sim/messages", _messages)
    app.router.add_get("/_sim/calls", _calls)
    app.router.add_post("/_sim/replies", _replies)
    app.router.add_get("/_sim/faults", _faults)
    app.router.add_post("/_sim/faults", _add_fault)
    app.router.add_delete("/_sim/faults", _clear_faults)
    app.router.add_post("/_sim/balance", _balance)
    app.router.add_post("/_sim/carrier-codes", _carrier_codes)
    app.router.add_get("/_sim/accounts/{ac}", _account)
    app.router.add_post("/_sim/accounts/{ac}/flags", _flags)
    app.router.add_post("/_sim/reset", _reset)
    return app


class Simulator:
    """A simulated c123 gateway on a local port, for demos, tests and the daemon's default."""

    def __init__(
        self,
        settings: SimulatorSettings | None = None,
        *,
        clock: Clock | None = None,
        monotonic: Monotonic | None = None,
    ) -> None:
        self.state = GatewayState(settings, clock=clock, monotonic=monotonic)
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """Base URL of the running simulator, e.g. http://127.0.0.1:41234."""
        if self._url is None:
            raise RuntimeError("the simulator is not running")
        return self._url

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on host:port (0 picks a free port) and return the base URL."""
        if self._runner is not None:
            raise RuntimeError("the simulator is already running")
        # No access log: GET requests carry the key in their query string.
        runner = web.AppRunner(
            make_app(self.state), access_log=None, shutdown_timeout=SHUTDOWN_SECONDS
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self._url = f"http://{shown}:{bound_port}"
        return self._url

    async def stop(self) -> None:
        """Stop listening and close open connections; safe to call twice."""
        runner, self._runner, self._url = self._runner, None, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def serve(
    host: str = "127.0.0.1", port: int = 0, settings: SimulatorSettings | None = None
) -> None:
    """Run a simulator until cancelled."""
    simulator = Simulator(settings)
    url = await simulator.start(host, port)
    accounts = ",".join(account.ac for account in simulator.state.settings.accounts)
    log.info("simulator_listening", url=url, account=accounts)
    try:
        await asyncio.Event().wait()
    finally:
        await simulator.stop()
        log.info("simulator_stopped", url=url)


# --- the gateway's endpoints ------------------------------------------------------------------


def _gateway(path: str) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        params = await _params(request)
        name = params.get("action", "")
        state.count_call(name)
        action = next((a for a in Action if a.value == name), None)
        if action is None or action.path != path:
            # A real client never does this: a loud 404 catches its bug at once.
            raise web.HTTPNotFound(text=f"no action {name[:40]!r} at {path}\n")
        with state.answering(params):
            return await _answer(request, state, action, params)

    return handle


async def _answer(
    request: web.Request, state: GatewayState, action: Action, params: dict[str, str]
) -> web.StreamResponse:
    """The answer to one call: a queued fault, or what the gateway would say."""
    fault = state.take_fault(action)
    if fault is not None:
        log.info("simulator_fault", kind=fault.kind.value, action=action.value)
        if fault.kind is FaultKind.DELAY:
            await asyncio.sleep(fault.seconds)
        elif fault.kind is FaultKind.DROP:
            return _drop(request)
        elif fault.kind is FaultKind.HTTP500:
            return web.Response(status=500, text="500 Internal Server Error\n")
        elif fault.kind is FaultKind.MALFORMED:
            body, content_type = malformed(action.value, fault.variant)
            return web.Response(text=body, content_type=content_type, charset="utf-8")
        elif fault.kind is FaultKind.CODE:
            return _xml(forced_code(action.value, fault.code or 0))
        elif fault.kind is FaultKind.HOLD:
            # The read happens now (its records are handed out); the answer comes late, as
            # from a gateway that stalls, or reaches a poller that was paused meanwhile.
            answer = state.handle(action, params)
            held = _xml(render(answer, reply_time_millis=state.settings.reply_time_millis))
            await _hold(request, fault.seconds)
            return held
        else:
            state.handle(action, params)
            return _drop(request)
    answer = state.handle(action, params)
    return _xml(render(answer, reply_time_millis=state.settings.reply_time_millis))


async def _hold(request: web.Request, seconds: float) -> None:
    """Wait `seconds`, or until the caller hangs up: a held answer nobody waits for any more
    is no longer a call in flight."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        await asyncio.sleep(min(left, _HANG_UP_POLL))


async def _params(request: web.Request) -> dict[str, str]:
    # Parsed by hand so that GET and POST read alike: UTF-8, "+" is a space, blanks kept,
    # and bytes that are not UTF-8 become U+FFFD rather than an error.
    pairs = parse_qsl(request.rel_url.raw_query_string, keep_blank_values=True, errors="replace")
    if request.method == "POST":
        if request.content_type == "multipart/form-data":
            form = await request.post()
            pairs += [(key, value) for key, value in form.items() if isinstance(value, str)]
        else:
            body = (await request.read()).decode("utf-8", "replace")
            pairs += parse_qsl(body, keep_blank_values=True, errors="replace")
    return dict(pairs)


def _json(data: object, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=_dumps)


def _dumps(data: object) -> str:
    return json.dumps(data, ensure_ascii=False)


def _xml(body: str) -> web.Response:
    return web.Response(text=body, content_type="text/xml", charset="utf-8")


def _drop(request: web.Request) -> web.Response:
    # With its transport closed aiohttp cannot write this response and treats the
    # connection as gone: the client sees the server disconnect without an answer.
    if request.transport is not None:
        request.transport.close()
    return web.Response()


# --- the admin API ----------------------------------------------------------------------------


@web.middleware
async def _admin_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except InvalidInput as error:
        return _json({"error": error.problem, "field": error.field}, status=400)


async def _messages(request: web.Request) -> web.Response:
    return _json([_message_json(m) for m in request.app[STATE].messages])


async def _calls(request: web.Request) -> web.Response:
    return _json(dict(request.app[STATE].calls))


async def _replies(request: web.Request) -> web.Response:
    data = await _object(request, {"mobile", "content", "time", "account"}, {"mobile", "content"})
    reply = request.app[STATE].inject_reply(
        _text(data, "mobile"),
        _text(data, "content"),
        time=_time(data.get("time")),
        account=_optional_text(data, "account"),
    )
    return _json(
        {
            "mobile": reply.mobile,
            "content": reply.content,
            "time": reply.time.isoformat(),
            "msgid": reply.msgid,
        },
        status=201,
    )


async def _faults(request: web.Request) -> web.Response:
    return _json([_fault_json(fault) for fault in request.app[STATE].faults])


async def _add_fault(request: web.Request) -> web.Response:
    fields = {"kind", "count", "action", "seconds", "code", "variant"}
    data = await _object(request, fields, {"kind"})
    action = data.get("action")
    count = _integer(data, "count")
    seconds = data.get("seconds", 0)
    if isinstance(seconds, bool) or not isinstance(seconds, int | Decimal):
        raise InvalidInput("seconds", "must be a number of seconds")
    fault = Fault(
        kind=member_of(FaultKind, data["kind"], "kind"),
        count=1 if count is None else count,
        action=None if action is None else member_of(Action, action, "action"),
        seconds=float(seconds),  # a duration, not money: float is fine here
        code=_integer(data, "code"),
        variant=member_of(MalformedVariant, data.get("variant", "html"), "variant"),
    )
    request.app[STATE].add_fault(fault)
    return _json(_fault_json(fault), status=201)


async def _clear_faults(request: web.Request) -> web.Response:
    return _json({"cleared": request.app[STATE].clear_faults()})


async def _balance(request: web.Request) -> web.Response:
    data = await _object(request, {"account", "remain", "add"}, set())
    state = request.app[STATE]
    account = state.account(_optional_text(data, "account"))
    remain = state.set_balance(
        remain=_money(data, "remain"), add=_money(data, "add"), account=account.config.ac
    )
    return _json({"account": account.config.ac, "remain": money_text(remain)})


async def _carrier_codes(request: web.Request) -> web.Response:
    data = await _object(request, None, set())
    codes: dict[str, str | None] = {}
    for mobile, code in data.items():
        if code is not None and not isinstance(code, str):
            raise InvalidInput(mobile, "must be a carrier code or null")
        codes[mobile] = code
    return _json(request.app[STATE].set_carrier_codes(codes))


async def _account(request: web.Request) -> web.Response:
    state = request.app[STATE]
    account = state.accounts.get(request.match_info["ac"])
    if account is None:
        return _json({"error": f"no account {request.match_info['ac']!r}", "field": "ac"}, 404)
    names = ("key_locked", "account_locked", "api_disabled", "failed_keys", "wrong_key_calls")
    return _json(
        {
            "account": account.config.ac,
            "balance": money_text(account.balance),
            **{name: getattr(account, name) for name in names},
            "in_flight": account.in_flight,
            "max_in_flight": account.max_in_flight,
            "reads_in_flight": account.reads_in_flight,
            "max_reads_in_flight": account.max_reads_in_flight,
        }
    )


async def _flags(request: web.Request) -> web.Response:
    state = request.app[STATE]
    ac = request.match_info["ac"]
    if ac not in state.accounts:
        return _json({"error": f"no account {ac!r}", "field": "ac"}, status=404)
    names = ("key_locked", "account_locked", "api_disabled")
    data = await _object(request, set(names), set())
    flags: dict[str, bool] = {}
    for name in names:
        value = data.get(name)
        if value is not None:
            if not isinstance(value, bool):
                raise InvalidInput(name, "must be true or false")
            flags[name] = value
    account = state.set_flags(ac, **flags)
    return _json({"account": ac, **{name: getattr(account, name) for name in names}})


async def _reset(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return _json({"reset": True})


async def _object(
    request: web.Request, allowed: set[str] | None, required: set[str]
) -> dict[str, object]:
    try:
        # Decimal keeps amounts such as 0.1 exact; money never passes through float.
        data = json.loads(await request.text(), parse_float=Decimal)
    except ValueError:
        raise InvalidInput("body", "must be a JSON object") from None
    if not isinstance(data, dict):
        raise InvalidInput("body", "must be a JSON object")
    for name in data:
        if allowed is not None and name not in allowed:
            raise InvalidInput(name, f"unknown field; allowed: {', '.join(sorted(allowed))}")
    for name in sorted(required - data.keys()):
        raise InvalidInput(name, "is required")
    return data


def _text(data: dict[str, object], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise InvalidInput(name, "must be a string")
    return value


def _integer(data: dict[str, object], name: str) -> int | None:
    value = data.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise InvalidInput(name, "must be a whole number")
    return value


def _optional_text(data: dict[str, object], name: str) -> str | None:
    return None if data.get(name) is None else _text(data, name)


def _money(data: dict[str, object], name: str) -> Decimal | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise InvalidInput(name, 'must be an amount such as 100 or "12.50"')
    try:
        return Decimal(value)
    except InvalidOperation:
        raise InvalidInput(name, 'must be an amount such as 100 or "12.50"') from None


def _time(value: object) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(int(value), UTC)
        except (OverflowError, OSError, ValueError):
            raise InvalidInput("time", "is out of range") from None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed
    raise InvalidInput("time", "must be epoch seconds or an ISO 8601 time with an offset")


def _message_json(message: SimMessage) -> dict[str, object]:
    return {
        "msgid": message.msgid,
        "mobile": message.mobile,
        "content": message.content,
        "segments": message.segments,
        "price": str(message.price),
        "submitted_at": message.submitted_at.isoformat(),
        "scheduled_for": message.scheduled_for.isoformat() if message.scheduled_for else None,
        "action": message.action.value,
        "account": message.account,
    }


def _fault_json(fault: Fault) -> dict[str, object]:
    return {
        "kind": fault.kind.value,
        "count": fault.count,
        "action": fault.action.value if fault.action else None,
        "seconds": fault.seconds,
        "code": fault.code,
        "variant": fault.variant.value,
    }
