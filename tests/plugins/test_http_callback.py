"""The http_callback output: signed POSTs to a real receiver, one classified outcome per job."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from pytest_aiohttp import AiohttpServer
from structlog.testing import capture_logs

from bridge import __version__
from bridge.plugin.base import Job, OutcomeKind, PluginContext
from bridge.plugin.retry import retry_after
from bridge.plugins.http_callback import HttpCallbackConfig, HttpCallbackOutput, sign, verify

SECRET = "callback-secret-0123456789"


@dataclass
class Receiver:
    """A callback receiver that checks signatures as the docstring tells receivers to."""

    url: str = ""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    text: str = "ok"
    delay: float = 0.0
    drop: bool = False
    bodies: list[dict[str, Any]] = field(default_factory=list)
    seen_headers: list[dict[str, str]] = field(default_factory=list)
    refused: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        timestamp = request.headers.get("X-Smsbridge-Timestamp", "")
        given_signature = request.headers.get("X-Smsbridge-Signature", "")
        digest = hmac.new(SECRET.encode(), timestamp.encode() + b"." + raw, hashlib.sha256)
        fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) <= 300
        if not (fresh and hmac.compare_digest(f"sha256={digest.hexdigest()}", given_signature)):
            self.refused += 1
            return web.Response(status=401, text="bad signature")
        self.bodies.append(json.loads(raw))
        self.seen_headers.append(dict(request.headers))
        if self.drop:
            assert request.transport is not None
            request.transport.close()  # the body arrived; the answer never leaves
        await asyncio.sleep(self.delay)
        return web.Response(status=self.status, headers=self.headers, text=self.text)


Make = Callable[..., HttpCallbackOutput]


@pytest.fixture
async def receiver(aiohttp_server: AiohttpServer) -> Receiver:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/cb", receiver.handle)
    app.router.add_post("/moved", _redirect)
    server = await aiohttp_server(app)
    receiver.url = str(server.make_url("/cb"))
    return receiver


async def _redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/cb")


@pytest.fixture
def make(receiver: Receiver, http_session: aiohttp.ClientSession) -> Make:
    def build(**config: Any) -> HttpCallbackOutput:
        config.setdefault("url", receiver.url)
        if "secret_file" not in config:
            config.setdefault("secret", SECRET)
        ctx = PluginContext(name="cb", http=http_session, log=structlog.get_logger())
        return HttpCallbackOutput(HttpCallbackConfig.model_validate(config), ctx)

    return build


JOB = Job(
    id=7,
    recipient="ops-channel",
    text="DiskFull on db1",
    payload={"kind": "alert", "labels": {"host": "db1"}, "status": "firing", "job_id": 99},
)


async def test_sent_with_signed_body_and_request_id(receiver: Receiver, make: Make) -> None:
    """A 2xx is sent; the receiver verified the signature and got the documented body."""
    receiver.headers = {"X-Request-Id": "req-1"}
    output = make(headers={"X-Team": "ops"})
    await output.start()
    (outcome,) = await output.deliver([JOB])
    assert (outcome.job_id, outcome.kind, outcome.ref) == (7, OutcomeKind.SENT, "req-1")
    assert receiver.refused == 0
    assert receiver.bodies == [
        {
            "text": "DiskFull on db1",
            "recipient": "ops-channel",
            "job_id": 7,  # the job's own id wins over a payload key of the same name
            "kind": "alert",
            "labels": {"host": "db1"},
            "status": "firing",
        }
    ]
    headers = receiver.seen_headers[0]
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == f"smsbridge/{__version__}"
    assert headers["X-Team"] == "ops"


async def test_each_job_gets_its_outcome_in_order(receiver: Receiver, make: Make) -> None:
    """A batch posts every job once and answers in the jobs' order."""
    jobs = [Job(id=i, recipient="r", text=f"t{i}") for i in range(5)]
    outcomes = await make().deliver(jobs)
    assert [(o.job_id, o.kind, o.ref) for o in outcomes] == [
        (i, OutcomeKind.SENT, "") for i in range(5)
    ]
    assert sorted(body["job_id"] for body in receiver.bodies) == list(range(5))


@pytest.mark.parametrize(
    ("status", "headers", "after"),
    [
        (500, {}, None),
        (502, {}, None),
        (503, {"Retry-After": "30"}, 30.0),
        (429, {"Retry-After": "7"}, 7.0),
        (429, {}, None),
        (429, {"Retry-After": "soon"}, None),
        (408, {}, None),
    ],
)
async def test_server_trouble_is_retry(
    receiver: Receiver, make: Make, status: int, headers: dict[str, str], after: float | None
) -> None:
    """5xx, 429 and 408 are retried, waiting as long as Retry-After asks."""
    receiver.status, receiver.headers = status, headers
    (outcome,) = await make().deliver([JOB])
    assert (outcome.kind, outcome.code, outcome.retry_after) == (
        OutcomeKind.RETRY,
        str(status),
        after,
    )
    assert outcome.reason.startswith(f"the receiver answered HTTP {status}")


def test_retry_after_accepts_an_http_date() -> None:
    """Retry-After as an HTTP date is the seconds until then, never negative."""
    now = 1_714_557_600.0  # 2024-05-01T10:00:00Z
    assert retry_after("Wed, 01 May 2024 10:01:00 GMT", now=now) == 60.0
    assert retry_after("Wed, 01 May 2024 09:00:00 GMT", now=now) == 0.0
    assert retry_after("", now=now) is None


async def test_timeout_is_retry(receiver: Receiver, make: Make) -> None:
    """A receiver slower than the timeout means retry later."""
    receiver.delay = 2.0
    (outcome,) = await make(timeout="100ms").deliver([JOB])
    assert (outcome.kind, outcome.code, outcome.reason) == (
        OutcomeKind.RETRY,
        "timeout",
        "no answer within 0.1s",
    )


async def test_connection_refused_is_retry(make: Make) -> None:
    """Nobody listening means retry later, with a reason naming neither URL nor secret."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (outcome,) = await make(url=f"http://127.0.0.1:{port}/cb?token=abc").deliver([JOB])
    assert (outcome.kind, outcome.code) == (OutcomeKind.RETRY, "connect")
    assert outcome.reason.startswith("cannot connect to the receiver")
    assert "token=abc" not in outcome.reason


async def test_dropped_connection_after_sending_is_retry(receiver: Receiver, make: Make) -> None:
    """The body arrived but the answer did not: retry, relying on the receiver's job_id dedupe."""
    receiver.drop = True
    (outcome,) = await make().deliver([JOB])
    assert (outcome.kind, outcome.code) == (OutcomeKind.RETRY, "disconnected")
    assert len(receiver.bodies) == 1


@pytest.mark.parametrize("status", [400, 404, 422])
async def test_client_errors_fail(receiver: Receiver, make: Make, status: int) -> None:
    """Other 4xx answers fail the job with the status and the start of the body."""
    receiver.status, receiver.text = status, "unknown\n recipient"
    (outcome,) = await make().deliver([JOB])
    assert (outcome.kind, outcome.code) == (OutcomeKind.FAILED, str(status))
    assert outcome.reason.endswith(": unknown recipient")


async def test_redirect_is_not_followed(receiver: Receiver, make: Make) -> None:
    """A 3xx fails the job instead of sending the signed body to another address."""
    (outcome,) = await make(url=receiver.url.replace("/cb", "/moved")).deliver([JOB])
    assert (outcome.kind, outcome.code) == (OutcomeKind.FAILED, "302")
    assert "redirects are not followed" in outcome.reason
    assert receiver.bodies == []


async def test_secret_never_in_reasons_or_logs(receiver: Receiver, make: Make) -> None:
    """A receiver echoing the secret does not get it into outcomes or logs."""
    receiver.status, receiver.text = 400, f"expected a signature made with {SECRET}"
    with capture_logs() as logs:
        (outcome,) = await make().deliver([JOB])
        receiver.status = 500
        (retry,) = await make().deliver([JOB])
    assert "<redacted>" in outcome.reason
    assert SECRET not in outcome.reason + retry.reason + repr(logs)


async def test_wrong_secret_is_refused_by_the_receiver(receiver: Receiver, make: Make) -> None:
    """The receiver's check is real: a different secret fails with its 401."""
    (outcome,) = await make(secret="another-secret").deliver([JOB])
    assert (outcome.kind, outcome.code, receiver.refused) == (OutcomeKind.FAILED, "401", 1)


async def test_secret_file_is_read_at_start(receiver: Receiver, make: Make, tmp_path: Path) -> None:
    """secret_file is read once at start; an empty one fails start-up."""
    path = tmp_path / "secret"
    path.write_text(f"{SECRET}\n")
    output = make(secret_file=str(path))
    await output.start()
    path.write_text("changed")
    assert (await output.deliver([JOB]))[0].kind is OutcomeKind.SENT
    path.write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        await make(secret_file=str(path)).start()


async def test_unserialisable_payload_fails(make: Make) -> None:
    """A payload that is not JSON fails its job instead of raising."""
    (outcome,) = await make().deliver([Job(id=1, recipient="r", text="t", payload={"x": {1, 2}})])
    assert (outcome.kind, outcome.code) == (OutcomeKind.FAILED, "payload")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"url": "http://x"}, "set exactly one of secret"),
        ({"url": "http://x", "secret": "s", "secret_file": __file__}, "set exactly one of secret"),
        ({"url": "ftp://x", "secret": "s"}, "http:// or https://"),
        ({"url": "http://x", "secret": ""}, "must not be empty"),
        ({"url": "http://x", "secret": "s", "headers": {"X-Smsbridge-Signature": "x"}}, "set by"),
        ({"url": "http://x", "secret": "s", "headers": {"X-A": "a\r\nB: b"}}, "one line"),
        ({"url": "http://x", "secret": "s", "headers": {"bad name": "a"}}, "header name"),
        ({"url": "http://x", "secret": "s", "timeout": "0s"}, "greater than zero"),
    ],
)
def test_config_errors(config: dict[str, Any], message: str) -> None:
    """URL, secret source, headers and timeout are checked when the config loads."""
    with pytest.raises(ValidationError, match=message):
        HttpCallbackConfig.model_validate(config)


@given(
    secret=st.binary(min_size=1, max_size=64),
    body=st.binary(min_size=1, max_size=256),
    timestamp=st.integers(min_value=0, max_value=2**40),
    data=st.data(),
)
def test_signature_verifies_what_it_signs_and_nothing_else(
    secret: bytes, body: bytes, timestamp: int, data: st.DataObject
) -> None:
    """verify accepts the signed body and refuses any changed byte of body or signature."""
    signature = sign(secret, timestamp, body)
    assert verify(secret, str(timestamp), signature, body, now=timestamp)
    index = data.draw(st.integers(0, len(body) - 1))
    flip = data.draw(st.integers(1, 255))
    changed = body[:index] + bytes([body[index] ^ flip]) + body[index + 1 :]
    assert not verify(secret, str(timestamp), signature, changed, now=timestamp)
    position = data.draw(st.integers(len("sha256="), len(signature) - 1))
    other = "0" if signature[position] != "0" else "1"
    forged = signature[:position] + other + signature[position + 1 :]
    assert not verify(secret, str(timestamp), forged, body, now=timestamp)
    assert not verify(secret, str(timestamp), signature, body, now=timestamp + 301)
    assert not verify(secret, str(timestamp + 1), signature, body, now=timestamp)


@pytest.mark.parametrize("timestamp", ["", "12a", "-5", "١٢"])
def test_signature_needs_a_plain_numeric_timestamp(timestamp: str) -> None:
    """Missing or non-numeric timestamps are refused outright."""
    assert not verify(b"k", timestamp, sign(b"k", 0, b"x"), b"x", now=0)
