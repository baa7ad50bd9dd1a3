"""WeCom self-built app: encrypted callbacks in, app messages out (token kept fresh), end to end."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import aiohttp
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st
from pytest_aiohttp import AiohttpServer
from structlog.testing import capture_logs

from bridge.config import ConfigError
from bridge.events import Conversation, EventKind
from bridge.plugin.base import Job, OutcomeKind, PluginContext
from bridge.plugin.registry import INPUTS, OUTPUTS, Registry
from bridge.plugins.c123.simulator import SimulatorSettings
from bridge.plugins.wecom import (
    CallbackError,
    DecryptError,
    WecomAppInput,
    WecomAppOutput,
    WecomAppOutputConfig,
    decrypt,
)
from bridge.plugins.wecom.crypto import aes_key, open_callback
from bridge.runtime.daemon import Daemon
from bridge.runtime.settings import load_settings
from bridge.testing import RecordingSubmit, ServeInput

PAYLOADS = Path(__file__).parent / "payloads"
CORP = "wwa1b2c3d4e5f60718"
TOKEN = "QDG6eK2TrKbGJ3mcU7Vd"
AES = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"  # WeCom's documented sample key
SECRET = "Hq3lDo3BxSeYrLRoBwkgTpgtfLjvxtaP0aLk7ZGn2Yk"
AGENT = 1000002
USER = "LiWei"
ALICE = "15102110086"


def payload(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / f"wecom_app_{name}.json").read_bytes())
    return data


def message_xml(name: str = "text", **fields: str) -> bytes:
    """A documented callback message, with fields replaced (e.g. Content, MsgId)."""
    text = (PAYLOADS / f"wecom_app_{name}.xml").read_text()
    for tag, value in fields.items():
        start, end = text.index(f"<{tag}>"), text.index(f"</{tag}>")
        text = text[:start] + f"<{tag}>{escape(value)}" + text[end:]
    return text.encode()


# --- the documented scheme, written independently of the production decryptor -------------


def encrypt(message: bytes, receive_id: str = CORP, aes: str = AES) -> str:
    """WeCom's encryptor: random(16) + len(4, big-endian) + msg + receive id, pad to 32."""
    key = base64.b64decode(aes + "=")
    plain = os.urandom(16) + len(message).to_bytes(4, "big") + message + receive_id.encode()
    pad = 32 - len(plain) % 32
    plain += bytes([pad]) * pad
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()


def sign(encrypt_text: str, timestamp: str, nonce: str, token: str = TOKEN) -> str:
    joined = "".join(sorted([token, timestamp, nonce, encrypt_text]))
    return hashlib.sha1(joined.encode()).hexdigest()  # noqa: S324 - WeCom's scheme


def signed_query(encrypt_text: str, *, age: float = 0, token: str = TOKEN) -> dict[str, str]:
    timestamp, nonce = str(int(time.time() - age)), os.urandom(4).hex()
    return {
        "msg_signature": sign(encrypt_text, timestamp, nonce, token),
        "timestamp": timestamp,
        "nonce": nonce,
    }


def envelope(encrypt_text: str) -> bytes:
    return (
        f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><AgentID><![CDATA[{AGENT}]]></AgentID>"
        f"<Encrypt><![CDATA[{encrypt_text}]]></Encrypt></xml>"
    ).encode()


# --- a fake WeCom API -----------------------------------------------------------------------


@dataclass
class FakeWecomApp:
    """gettoken and message/send as WeCom documents them: checks corp id, Secret and token,
    records sent messages; scripted answers first; `expire()` makes issued tokens stale."""

    url: str = ""
    script: list[tuple[int, str]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    expired: set[str] = field(default_factory=set)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def expire(self) -> None:
        self.expired.update(self.tokens)

    async def gettoken(self, request: web.Request) -> web.Response:
        if (request.query.get("corpid"), request.query.get("corpsecret")) != (CORP, SECRET):
            return web.json_response(payload("gettoken_40001"))
        self.tokens.append(f"token-{len(self.tokens)}-{os.urandom(8).hex()}")
        return web.json_response({**payload("gettoken_ok"), "access_token": self.tokens[-1]})

    async def send(self, request: web.Request) -> web.Response:
        token = request.query.get("access_token", "")
        if token not in self.tokens:
            return web.json_response(payload("send_40014"))
        if token in self.expired:
            return web.json_response(payload("send_42001"))
        body = await request.json()
        if set(body) != {"touser", "msgtype", "agentid", "text"} or body["msgtype"] != "text":
            self.violations.append(f"not a documented text message: {body}")
        if body["agentid"] != AGENT or not 0 < len(body["text"]["content"].encode()) <= 2048:
            self.violations.append(f"agentid or content: {body}")
        if self.script:
            status, name = self.script.pop(0)
            if not name:
                return web.Response(status=status, text="<html>Bad Gateway</html>")
            return web.json_response(payload(name), status=status)
        self.sent.append(body)
        self.changed.set()
        return web.json_response({**payload("send_ok"), "msgid": f"msg{len(self.sent)}"})

    async def until(self, predicate: Callable[[list[dict[str, Any]]], bool]) -> None:
        """Wait (at most 10 s) until the sent messages satisfy `predicate`."""
        async with asyncio.timeout(10):
            while not predicate(self.sent):
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def fake(aiohttp_server: AiohttpServer) -> FakeWecomApp:
    wecom = FakeWecomApp()
    app = web.Application()
    app.router.add_get("/cgi-bin/gettoken", wecom.gettoken)
    app.router.add_post("/cgi-bin/message/send", wecom.send)
    server = await aiohttp_server(app)
    wecom.url = str(server.make_url("")).rstrip("/")
    return wecom


# --- the input ------------------------------------------------------------------------------


Client = TestClient[web.Request, web.Application]


@pytest.fixture
def serve(serve_input: ServeInput) -> Callable[..., Awaitable[Client]]:
    """Mount a wecom input at /hooks/wx in a real aiohttp app and return a client."""

    async def start(**options: Any) -> Client:
        config = {
            "corp_id": CORP,
            "token": TOKEN,
            "encoding_aes_key": AES,
            "reply_output": "wx-out",
            **options,
        }
        return await serve_input(WecomAppInput, "wx", config)

    return start


async def callback(
    client: Client, body: bytes, query: dict[str, str] | None = None, **signing: Any
) -> tuple[int, bytes]:
    """POST a message as WeCom does: the XML envelope, signed in the query."""
    if query is None:
        encrypted = body.split(b"<Encrypt><![CDATA[")[1].split(b"]]>")[0].decode()
        query = signed_query(encrypted, **signing)
    async with client.post("/hooks/wx", params=query, data=body) as response:
        return response.status, await response.read()


async def test_command_becomes_an_event(serve: Any, recorder: RecordingSubmit) -> None:
    """An encrypted `sms ...` text gives a command Event answering the user; the body is empty."""
    client = await serve(agent_id=AGENT)
    assert await callback(client, envelope(encrypt(message_xml()))) == (200, b"")
    ((event,), key, window) = recorder.calls[0]
    assert (event.kind, event.source, event.text) == (
        EventKind.COMMAND,
        "wx",
        "alice 你好 disk is full",
    )
    assert event.labels == {"platform": "wecom", "user": USER, "user_name": USER, "channel": USER}
    assert event.conversation == Conversation("wx-out", USER, "7364012345678901234")
    assert (event.data["MsgType"], event.data["AgentID"]) == ("text", str(AGENT))
    assert window == 24 * 3600.0
    await callback(client, envelope(encrypt(message_xml())))  # WeCom's retry: same MsgId
    assert recorder.calls[1][1] == key


async def test_url_verification_answers_the_plaintext(
    serve: Any, recorder: RecordingSubmit
) -> None:
    """GET with a signed, encrypted echostr is answered with its plaintext; a forged one is 401."""
    client = await serve()
    echostr = encrypt(b"4807301846553917937")
    query = {**signed_query(echostr), "echostr": echostr}
    async with client.get("/hooks/wx", params=query) as response:
        assert (response.status, await response.text()) == (200, "4807301846553917937")
        assert response.content_type == "text/plain"
    query["msg_signature"] = "0" * 40
    async with client.get("/hooks/wx", params=query) as response:
        assert response.status == 401
    assert recorder.calls == []


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda e: ({**signed_query(e), "msg_signature": sign(e, "1", "x")}, e), "bad_signature"),
        (lambda e: (signed_query(e, token="guessed"), e), "bad_signature"),
        (lambda e: ({k: v for k, v in signed_query(e).items() if k != "nonce"}, e), "missing"),
        (lambda e: (signed_query(e, age=301), e), "stale_timestamp"),
        (lambda e: (signed_query(e, age=-301), e), "stale_timestamp"),
        (lambda e: ({**signed_query(e), "timestamp": "1e9"}, e), "malformed_timestamp"),
        (lambda e: (signed_query(x := encrypt(message_xml(), "wwother")), x), "wrong_receiver"),
        (lambda e: (signed_query(x := encrypt(message_xml(), aes="A" * 43)), x), "undecryptable"),
    ],
    ids=[
        "forged",
        "wrong-token",
        "unsigned",
        "stale",
        "future",
        "bad-ts",
        "other-corp",
        "other-key",
    ],
)
async def test_refused_callbacks(
    serve: Any,
    recorder: RecordingSubmit,
    make: Callable[[str], tuple[dict[str, str], str]],
    reason: str,
) -> None:
    """Forged, unsigned, replayed and foreign messages are 401 + auth_failed, never submitted."""
    client = await serve()
    query, encrypted = make(encrypt(message_xml()))
    with capture_logs() as logs:
        status, body = await callback(client, envelope(encrypted), query)
    assert status == 401
    assert recorder.calls == []
    assert [log["reason"] for log in logs if log["event"] == "auth_failed"] == [reason]
    assert all(secret not in repr(logs) + body.decode() for secret in (TOKEN, AES))


@pytest.mark.parametrize(
    ("xml", "options"),
    [
        (message_xml("image"), {}),
        (message_xml("event"), {}),
        (message_xml(Content="hello team"), {}),
        (message_xml(Content="please sms alice"), {}),
        (message_xml(), {"agent_id": 1000099}),
    ],
    ids=["image", "event", "chatter", "not-first-word", "other-app"],
)
async def test_other_messages_are_ignored(
    serve: Any, recorder: RecordingSubmit, xml: bytes, options: dict[str, Any]
) -> None:
    """Non-text messages, events, chatter and other apps' messages: 200, empty, no submit."""
    client = await serve(**options)
    assert await callback(client, envelope(encrypt(xml))) == (200, b"")
    assert recorder.calls == []


async def test_store_unavailable_is_503(serve: Any, recorder: RecordingSubmit) -> None:
    """When the command cannot be stored the answer is 503, so WeCom delivers it again."""
    recorder.fail = True
    client = await serve()
    assert (await callback(client, envelope(encrypt(message_xml()))))[0] == 503


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"<xml><Encrypt>", 400),
        (b'<!DOCTYPE x [<!ENTITY a "aaaa">]><xml><Encrypt>&a;</Encrypt></xml>', 400),
        (b"<xml/>", 401),
        (b"<xml>" + b"x" * 70_000 + b"</xml>", 413),
    ],
    ids=["broken", "dtd", "no-encrypt", "oversized"],
)
async def test_malformed_bodies_are_refused(serve: Any, body: bytes, status: int) -> None:
    """Broken XML and DTDs are 400, a missing Encrypt is 401, an oversized body 413."""
    client = await serve()
    assert (await callback(client, body, signed_query("x")))[0] == status


KEY = aes_key(AES)


@given(st.text())
def test_encryption_round_trips(text: str) -> None:
    """Whatever UTF-8 message WeCom encrypts for our corp decrypts to the same bytes."""
    message = text.encode("utf-8", "surrogatepass")
    assert decrypt(KEY, encrypt(message), CORP) == message


@given(st.text(max_size=300), st.data())
def test_any_altered_byte_is_refused(text: str, data: st.DataObject) -> None:
    """A changed ciphertext byte is refused (signature or decryption), only as CallbackError."""
    encrypted = encrypt(text.encode("utf-8", "surrogatepass"))
    query = signed_query(encrypted)
    raw = bytearray(base64.b64decode(encrypted))
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] ^= data.draw(st.integers(1, 255))
    altered = base64.b64encode(raw).decode()
    with pytest.raises(CallbackError) as refused:
        open_callback(
            TOKEN,
            KEY,
            CORP,
            timestamp=query["timestamp"],
            nonce=query["nonce"],
            signature=query["msg_signature"],
            encrypt=altered,
            window=300.0,
        )
    assert refused.value.reason == "bad_signature"
    # Unsigned, CBC may decrypt an altered block to noise, but never raises anything else.
    with contextlib.suppress(DecryptError):
        decrypt(KEY, altered, CORP)


@given(st.text(max_size=80))
def test_decrypt_of_arbitrary_text_raises_only_its_error(text: str) -> None:
    """Arbitrary text as ciphertext is refused as DecryptError, never another exception."""
    with pytest.raises(DecryptError):
        decrypt(KEY, text, CORP)


# --- the output -----------------------------------------------------------------------------


def output(
    fake: FakeWecomApp, http_session: aiohttp.ClientSession, **options: Any
) -> WecomAppOutput:
    config = {
        "corp_id": CORP,
        "corp_secret": SECRET,
        "agent_id": AGENT,
        "api_url": fake.url,
        "rate_limit": 1000,
        **options,
    }
    ctx = PluginContext(name="wx-out", http=http_session, log=structlog.get_logger())
    return WecomAppOutput(WecomAppOutputConfig.model_validate(config), ctx)


def job(text: str = "sent to alice", recipient: str = USER, thread: str = "7364") -> Job:
    return Job(id=5, recipient=recipient, text=text, payload={"thread": thread})


async def test_post_sends_an_app_message(
    fake: FakeWecomApp, http_session: aiohttp.ClientSession
) -> None:
    """A job becomes a text app message to its user; one token serves both posts."""
    wx = output(fake, http_session)
    outcomes = await wx.deliver([job(), job("second", thread="")])
    assert [(o.kind, o.ref) for o in outcomes] == [
        (OutcomeKind.SENT, "msg1"),
        (OutcomeKind.SENT, "msg2"),
    ]
    assert fake.sent[0] == {
        "touser": USER,
        "msgtype": "text",
        "agentid": AGENT,
        "text": {"content": "sent to alice"},
    }
    assert len(fake.tokens) == 1
    (nobody,) = await wx.deliver([job(recipient="")])
    assert (nobody.kind, nobody.code) == (OutcomeKind.FAILED, "400")
    (default,) = await output(fake, http_session, channel="@all").deliver([job(recipient="")])
    assert default.kind is OutcomeKind.SENT
    assert fake.sent[-1]["touser"] == "@all"


async def test_stale_token_is_fetched_again(
    fake: FakeWecomApp, http_session: aiohttp.ClientSession
) -> None:
    """An expired (42001) or unknown (40014) token is replaced once and the message sent."""
    wx = output(fake, http_session)
    await wx.deliver([job()])
    fake.expire()
    (outcome,) = await wx.deliver([job()])
    assert outcome.kind is OutcomeKind.SENT
    assert len(fake.tokens) == 2
    fake.tokens.clear()  # WeCom forgot every token: 40014
    (outcome,) = await wx.deliver([job()])
    assert outcome.kind is OutcomeKind.SENT
    assert len(fake.sent) == 3


async def test_long_text_is_split_or_truncated(
    fake: FakeWecomApp, http_session: aiohttp.ClientSession
) -> None:
    """Over 2048 bytes: numbered parts to the same user, each within the limit, or one cut part."""
    text = "磁盘已满 " * 500  # 2,500 characters, 6,500 bytes
    (split,) = await output(fake, http_session).deliver([job(text)])
    assert split.kind is OutcomeKind.SENT
    parts = [m["text"]["content"] for m in fake.sent]
    assert len(parts) == 4
    assert parts[0].endswith(" (1/4)")
    (cut,) = await output(fake, http_session, split_long=False).deliver([job(text)])
    assert cut.kind is OutcomeKind.SENT
    assert fake.sent[-1]["text"]["content"].endswith("more characters)")
    assert fake.violations == []


@pytest.mark.parametrize(
    ("status", "name", "kind", "after", "code"),
    [
        (200, "send_45009", OutcomeKind.RETRY, 60.0, "429"),
        (200, "send_busy", OutcomeKind.RETRY, None, "503"),
        (200, "send_81013", OutcomeKind.FAILED, None, "400"),
        (200, "send_invaliduser", OutcomeKind.FAILED, None, "400"),
        (502, "", OutcomeKind.RETRY, None, "502"),
    ],
)
async def test_refusals_are_classified(
    fake: FakeWecomApp,
    http_session: aiohttp.ClientSession,
    status: int,
    name: str,
    kind: OutcomeKind,
    after: float | None,
    code: str,
) -> None:
    """Throttling waits a minute, busy and 5xx retry, unknown users fail; no secret in reasons."""
    fake.script = [(status, name)]
    (outcome,) = await output(fake, http_session).deliver([job()])
    assert (outcome.kind, outcome.retry_after, outcome.code) == (kind, after, code)
    assert all(secret not in outcome.reason for secret in (SECRET, *fake.tokens))


async def test_wrong_secret_fails_without_showing_it(
    fake: FakeWecomApp, http_session: aiohttp.ClientSession
) -> None:
    """gettoken refusing the Secret (40001) fails the job; the reason names it, never shows it."""
    other = SECRET[::-1]
    with capture_logs() as logs:
        (outcome,) = await output(fake, http_session, corp_secret=other).deliver([job()])
    assert (outcome.kind, outcome.code) == (OutcomeKind.FAILED, "400")
    assert "40001" in outcome.reason
    assert other not in outcome.reason + repr(logs)
    assert fake.sent == []


def registry() -> Registry:
    """The installed adapters plus the wecom app's, until pyproject.toml registers them."""
    found = Registry.discover()
    found.inputs["wecom"] = [EntryPoint("wecom", "bridge.plugins.wecom:WecomAppInput", INPUTS)]
    found.outputs["wecom_app"] = [
        EntryPoint("wecom_app", "bridge.plugins.wecom:WecomAppOutput", OUTPUTS)
    ]
    return found


def test_config_refuses_a_bad_key_without_echoing_it(tmp_path: Path) -> None:
    """A truncated EncodingAESKey is named, not shown; the robot output `wecom` still loads."""
    path = tmp_path / "config.yaml"
    path.write_text(
        "inputs:\n  wx: {type: wecom, corp_id: c, token: t, encoding_aes_key: '${WX_AES}',"
        " reply_output: out}\n"
        "outputs:\n  out: {type: wecom_app, corp_id: c, corp_secret: s, agent_id: 1}\n"
        "  robot: {type: wecom, key: 693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa}\n"
    )
    with pytest.raises(ConfigError) as bad:
        load_settings(path, environ={"WX_AES": AES[:-1]}, registry=registry())
    assert "43-character EncodingAESKey" in str(bad.value)
    assert AES[:-1] not in str(bad.value)
    settings = load_settings(path, environ={"WX_AES": AES}, registry=registry())
    assert set(settings.outputs) >= {"out", "robot"}


# --- end to end -----------------------------------------------------------------------------


@pytest.fixture
async def daemon(tmp_path: Path, fake: FakeWecomApp) -> AsyncIterator[Daemon]:
    path = tmp_path / "config.yaml"
    path.write_text(f"""
server: {{listen: "127.0.0.1:0"}}
store: {{path: {tmp_path / "outbox.sqlite3"}}}
polling: {{replies: 1h, reports: 1h, balance: 1h}}
contacts:
  alice: "{ALICE}"
inputs:
  wx:
    type: wecom
    corp_id: {CORP}
    token: ${{WX_TOKEN}}
    encoding_aes_key: ${{WX_AES}}
    agent_id: {AGENT}
    reply_output: wx-out
    commands: {{allow_users: ["*"]}}
outputs:
  wx-out:
    type: wecom_app
    corp_id: {CORP}
    corp_secret: ${{WX_SECRET}}
    agent_id: {AGENT}
    api_url: "{fake.url}"
    rate_limit: 100
""")
    environ = {"WX_TOKEN": TOKEN, "WX_AES": AES, "WX_SECRET": SECRET}
    settings = load_settings(path, environ=environ, registry=registry())
    daemon = Daemon(settings, simulator_settings=SimulatorSettings(report_delay=0, rate_limit=None))
    await daemon.start()
    yield daemon
    await daemon.stop()


async def test_command_to_sms_and_the_reply_back_to_the_user(
    daemon: Daemon, fake: FakeWecomApp
) -> None:
    """`sms alice 你好` texts alice; the answer and alice's reply both go to the user."""
    assert daemon.simulator is not None
    sim = daemon.simulator.state
    encrypted = encrypt(message_xml())
    body = envelope(encrypted)
    async with aiohttp.ClientSession() as http_session:
        url = daemon.url + "/hooks/wx"
        async with http_session.post(url, params=signed_query(encrypted), data=body) as response:
            assert (response.status, await response.read()) == (200, b"")
        await sim.wait_for(lambda s: len(s.messages) == 1, timeout=10)
        (sms,) = sim.messages
        assert sms.mobile == ALICE
        assert "你好 disk is full" in sms.content
        await fake.until(lambda sent: len(sent) >= 1)

        sim.inject_reply(ALICE, "on my way")
        await daemon.poller.poll_replies()
        await daemon.processor.drain()
        await fake.until(lambda sent: any("on my way" in m["text"]["content"] for m in sent))
        assert {m["touser"] for m in fake.sent} == {USER}

        # WeCom retrying the same message must not text alice twice; a forgery is refused.
        async with http_session.post(url, params=signed_query(encrypted), data=body) as response:
            assert response.status == 200
        forged = {**signed_query(encrypted), "msg_signature": "0" * 40}
        async with http_session.post(url, params=forged, data=body) as response:
            assert response.status == 401
    assert len(sim.messages) == 1
    assert fake.violations == []
