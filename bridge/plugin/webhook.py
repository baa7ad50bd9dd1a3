"""What every JSON webhook input shares: bounded reads, parsing, readable errors, and submit."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, NoReturn

from aiohttp import web
from pydantic import SecretStr, ValidationError
from pydantic_core import ErrorDetails

from bridge.events import Event
from bridge.plugin.base import PluginContext, StoreUnavailableError

DEFAULT_MAX_BODY = 1024 * 1024  # Alertmanager without max_alerts can send large groups
JSON_TYPE = "application/json"

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_EXPECTED = {
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "mapping_type": "an object",
    "list_type": "a list",
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
}


class RequestRejectedError(Exception):
    """An answer other than 2xx: the status, the `{"error": ...}` text, and any extra headers."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        return web.json_response({"error": self.message}, status=self.status, headers=self.headers)


def reject(status: int, message: str, headers: Mapping[str, str] | None = None) -> NoReturn:
    raise RequestRejectedError(status, message, headers)


def secret_equal(given: str | bytes, expected: SecretStr | str | bytes) -> bool:
    """Compare in constant time; hashing first makes both sides the same length (§6.6)."""
    if isinstance(expected, SecretStr):
        expected = expected.get_secret_value()
    # surrogatepass: a header with undecodable bytes must compare unequal, not crash the handler.
    given_bytes = given.encode("utf-8", "surrogatepass") if isinstance(given, str) else given
    expected_bytes = expected.encode() if isinstance(expected, str) else expected
    return hmac.compare_digest(
        hashlib.sha256(given_bytes).digest(), hashlib.sha256(expected_bytes).digest()
    )


def sha256_hex(*parts: Any) -> str:
    """A stable hash of JSON-able parts (JSON keeps "a","bc" apart from "ab","c")."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def check_content_type(request: web.Request) -> None:
    if request.content_type != JSON_TYPE:
        shown = request.headers.get("Content-Type", "none")[:60]
        reject(415, f"expected Content-Type: {JSON_TYPE}, got {shown}")


async def read_body(request: web.Request, limit: int) -> bytes:
    """The raw body, refusing before reading when Content-Length is too big, and while reading
    when it lied or the body is chunked."""
    too_big = f"the body is larger than the {limit} bytes this input accepts"
    if request.content_length is not None and request.content_length > limit:
        reject(413, too_big)
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(limit + 1 - size):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            reject(413, too_big)
    return b"".join(chunks)


def _no_constant(name: str) -> NoReturn:
    # Python's json takes NaN and Infinity, which no JSON store or template can round-trip.
    raise ValueError(f"{name} is not JSON")


def parse_json(body: bytes) -> Any:
    """The parsed body, or a 400 saying what is wrong with it and where."""
    try:
        return json.loads(body, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        reject(400, f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
    except UnicodeDecodeError:
        reject(400, "malformed JSON: the body is not UTF-8 text")
    except ValueError as exc:
        reject(400, f"malformed JSON: {exc}")
    except RecursionError:
        reject(400, "malformed JSON: nested too deeply")


def format_loc(loc: Sequence[int | str]) -> str:
    """`('alerts', 3, 'labels')` as `alerts[3].labels`; odd keys quoted: `labels["a b"]`."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _IDENTIFIER.fullmatch(part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part)}]"
    return text or "the body"


def _describe(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}"
    if kind == "literal_error":
        return f"expected {error.get('ctx', {}).get('expected', 'another value')}"
    if kind == "value_error":  # our own validators' messages, without pydantic's prefix
        return str(error.get("ctx", {}).get("error", error["msg"]))[:120]
    if kind == "greater_than_equal":
        return f"expected a number of at least {error.get('ctx', {}).get('ge')}"
    return error["msg"][:120]


def validation_message(exc: ValidationError) -> str:
    """pydantic's errors as one line: the first problem, and how many more there are."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    message = f"{format_loc(first['loc'])}: {_describe(first)}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return message


async def submit_and_answer(
    ctx: PluginContext, events: Sequence[Event], *, dedupe_key: str, dedupe_window: float
) -> web.Response:
    """Submit, then answer 200 only because the events are stored; 503 if they could not be."""
    if not events:
        return web.json_response({"accepted": 0, "intents": 0, "duplicate": False})
    try:
        accepted = await ctx.submit(events, dedupe_key=dedupe_key, dedupe_window=dedupe_window)
    except StoreUnavailableError:
        # The sender (Alertmanager included) retries 5xx, so nothing is lost by refusing now.
        ctx.log.warning("store_unavailable", events=len(events))
        return web.json_response(
            {"error": "the events could not be stored; try again later"}, status=503
        )
    ctx.log.info(
        "events_received",
        events=accepted.events,
        intents=accepted.intents,
        duplicate=accepted.duplicate,
    )
    return web.json_response(
        {"accepted": accepted.events, "intents": accepted.intents, "duplicate": accepted.duplicate}
    )


async def answer(ctx: PluginContext, receive: Awaitable[web.Response]) -> web.Response:
    """Await a handler's work; a RequestRejectedError becomes its JSON answer and a log line."""
    try:
        return await receive
    except RequestRejectedError as exc:
        ctx.log.info("request_rejected", status=exc.status, error=exc.message)
        return exc.response()
