"""DingTalk: signed robot callbacks in, signed custom robot posts out, and the two end to end."""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import hmac
import json
import re
import socket
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from pytest_aiohttp import AiohttpServer
from structlog.testing import capture_logs

from bridge.events import EventKind
from bridge.plugin.base import Job, OutcomeKind, PluginContext
from bridge.plugin.chat import command_text
from bridge.plugins.dingtalk import (
    DingTalkInput,
    DingTalkInputConfig,
    DingTalkOutput,
    DingTalkOutputConfig,
    check,
    sign,
)
from bridge.store import SqliteStore, StoreReplay
from bridge.testing import DaemonFactory, RecordingSubmit, ServeInput, input_app, post_json

PAYLOADS = Path(__file__).parent / "payloads"
APP_SECRET = "dt-app-secret-0123456789abcdef"
TOKEN = "dt-access-token-0123456789"
ROBOT_SECRET = "SECdt-robot-secret-0123456789"
OTHER_TOKEN = "dt-other-token-9876543210"
ALICE = "15102110086"
MSG_ID = "msgA6nX7aUexRxqC5tnjiTxGQ=="
THREAD = f"{MSG_ID}|manager7675"


def payload(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / f"dingtalk_{name}.json").read_bytes())
    return data


def reference_sign(secret: str, timestamp: str) -> str:
    """protocols.md §3.3 written out again, so the fakes do not trust the plugin's own sign()."""
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def signed(secret: str = APP_SECRET, *, age: float = 0.0) -> dict[str, str]:
    """The headers DingTalk sends with a callback made `age` seconds ago."""
    timestamp = str(int((time.time() - age) * 1000))
    return {
        "Content-Type": "application/json; charset=utf-8",
        "timestamp": timestamp,
        "sign": reference_sign(secret, timestamp),
    }


# --- the fake DingTalk: custom robot webhooks ----------------------------------------------------


@dataclass
class FakeDingTalk:
    """`/robot/send` checking access_token and the signed URL as DingTalk does (§3.3)."""

    robots: dict[str, str | None] = field(
        default_factory=lambda: {TOKEN: ROBOT_SECRET, OTHER_TOKEN: None}
    )
    answers: list[tuple[int, Any, dict[str, str]]] = field(default_factory=list)
    posts: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0
    url: str = ""
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, request: web.Request) -> web.Response:
        raw_query = request.rel_url.raw_query_string  # query_string would be decoded
        query = urllib.parse.parse_qs(raw_query, keep_blank_values=True)
        token = query.get("access_token", [""])[0]
        if token not in self.robots:
            return web.json_response(payload("send_token_missing"))
        secret = self.robots[token]
        if secret is not None and not self._signed(raw_query, query, secret):
            self.refused += 1
            return web.json_response(payload("send_sign_mismatch"))
        assert request.content_type == "application/json"
        self.posts.append({"token": token, **json.loads(await request.read())})
        self.changed.set()
        if self.answers:
            status, body, headers = self.answers.pop(0)
            return web.json_response(body, status=status, headers=headers)
        return web.json_response(payload("send_ok"))

    @staticmethod
    def _signed(raw_query: str, query: dict[str, list[str]], secret: str) -> bool:
        timestamp = query.get("timestamp", [""])[0]
        given_sign = query.get("sign", [""])[0]
        raw_sign = re.search(r"(?:^|&)sign=([^&]*)", raw_query)
        # base64's + / = must arrive URL-encoded, or DingTalk reads another signature.
        encoded = raw_sign is not None and not set(raw_sign.group(1)) & set("+/=")
        fresh = timestamp.isdigit() and abs(time.time() * 1000 - int(timestamp)) <= 3_600_000
        return (
            encoded and fresh and hmac.compare_digest(given_sign, reference_sign(secret, timestamp))
        )

    async def until(self, count: int) -> list[dict[str, Any]]:
        """Wait (bounded) until `count` posts arrived."""
        async with asyncio.timeout(10):
            while len(self.posts) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.posts

    def texts(self) -> list[str]:
        return [post["text"]["content"] for post in self.posts]


@pytest.fixture
async def fake(aiohttp_server: AiohttpServer) -> FakeDingTalk:
    fake = FakeDingTalk()
    app = web.Application()
    app.router.add_post("/robot/send", fake.send)
    server = await aiohttp_server(app)
    fake.url = str(server.make_url("")).rstrip("/")
    return fake


# --- the input -------------------------------------------------------------------------------

Client = TestClient[web.Request, web.Application]
Serve = Callable[..., Awaitable[Client]]


@pytest.fixture
def serve(serve_input: ServeInput) -> Serve:
    """A dingtalk input mounted at /hooks/dt in a real aiohttp app, submitting to `recorder`."""

    async def start(**config: Any) -> Client:
        config = {"app_secret": APP_SECRET, "reply_output": "dt-out", **config}
        return await serve_input(DingTalkInput, "dt", config)

    return start


async def post(client: Client, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    async with client.post("/hooks/dt", data=data, headers=headers) as response:
        return response.status, await response.json()


def callback(content: str = " sms alice 你好 disk is full", **fields: Any) -> dict[str, Any]:
    body = copy.deepcopy(payload("callback_text"))
    body["text"]["content"] = content
    body.update(fields)
    return body


async def test_signed_command_becomes_an_event(serve: Serve, recorder: RecordingSubmit) -> None:
    """A signed `sms ...` @-message is one command event answering in its conversation."""
    client = await serve()
    status, body = await post(client, callback(), signed())
    assert (status, body) == (200, {"accepted": 1, "duplicate": False, "rejected": []})
    (event,) = recorder.events
    assert (event.kind, event.source, event.text) == (
        EventKind.COMMAND,
        "dt",
        "alice 你好 disk is full",
    )
    assert event.labels == {
        "platform": "dingtalk",
        "user": "manager7675",
        "user_name": "张三",
        "channel": "cid6KeBBLoveMJOGXoYKF5x7EeiodoA==",
    }
    assert event.conversation is not None
    assert event.conversation.to_json() == {
        "output": "dt-out",
        "channel": "cid6KeBBLoveMJOGXoYKF5x7EeiodoA==",
        "thread": THREAD,
    }
    assert event.data["msgId"] == MSG_ID
    assert recorder.calls[0][2] >= 3600  # the msgId dedupe outlasts the replay window


async def test_external_sender_is_named_by_sender_id(
    serve: Serve, recorder: RecordingSubmit
) -> None:
    """A sender without a staff id (an external contact) is known by senderId, not mentioned."""
    client = await serve()
    assert (await post(client, callback(senderStaffId=""), signed()))[0] == 200
    (event,) = recorder.events
    assert event.labels["user"] == "$:LWCP_v1:$h2U8ZoXUC3OxQQFCg3l+kg=="
    assert event.conversation is not None
    assert event.conversation.thread == f"{MSG_ID}|"


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (lambda: signed("another-app-secret"), "bad_signature"),
        (lambda: {"Content-Type": "application/json"}, "missing"),
        (lambda: {**signed(), "sign": ""}, "missing"),
        (lambda: {**signed(), "timestamp": "12a"}, "malformed_timestamp"),
        (lambda: {**signed(), "timestamp": "9" * 5000}, "malformed_timestamp"),
        (lambda: signed(age=3660), "stale_timestamp"),
        (lambda: signed(age=-3660), "stale_timestamp"),
    ],
    ids=["forged", "unsigned", "no-sign", "malformed", "huge", "replayed-late", "from-the-future"],
)
async def test_bad_authentication_is_401_and_nothing_is_submitted(
    serve: Serve,
    recorder: RecordingSubmit,
    headers: Callable[[], dict[str, str]],
    reason: str,
) -> None:
    """Forged, unsigned and out-of-window requests are 401 with an auth_failed log line."""
    client = await serve()
    with capture_logs() as logs:
        # Signed now, not at collection: the window is measured from the test's own clock.
        status, body = await post(client, callback(), headers())
    assert status == 401
    assert "error" in body
    assert recorder.calls == []
    failed = [log for log in logs if log["event"] == "auth_failed"]
    assert [log["reason"] for log in failed] == [reason]
    assert APP_SECRET not in repr(logs) + json.dumps(body)


async def test_replay_window_is_configurable(serve: Serve, recorder: RecordingSubmit) -> None:
    """A shorter replay_window refuses what DingTalk's hour would still allow."""
    client = await serve(replay_window="5m")
    assert (await post(client, callback(), signed(age=301)))[0] == 401
    assert (await post(client, callback(), signed(age=200)))[0] == 200


async def test_a_signature_cannot_carry_another_message(
    serve: Serve, recorder: RecordingSubmit
) -> None:
    """The sign covers only the timestamp: reused with another msgId it is refused; a
    redelivery of the same msgId passes and carries the same dedupe key."""
    client = await serve()
    headers = signed()
    assert (await post(client, callback(), headers))[0] == 200
    forged = callback("sms bob wire the money", msgId="msgForged==")
    status, _ = await post(client, forged, headers)
    assert status == 401
    assert (await post(client, callback(), headers))[0] == 200
    assert [call[0][0].text for call in recorder.calls] == ["alice 你好 disk is full"] * 2
    assert recorder.calls[0][1] == recorder.calls[1][1]


@pytest.mark.parametrize(
    "body",
    [
        callback("hello robot"),
        callback("smsalice hi"),
        callback("", msgtype="picture"),
        callback(senderId="$:LWCP_v1:$Sz2+5N/w7RrVKuFeN/n8+A=="),  # the robot itself
    ],
    ids=["chatter", "not-the-keyword", "picture", "own-message"],
)
async def test_other_messages_are_acknowledged_and_ignored(
    serve: Serve, recorder: RecordingSubmit, body: dict[str, Any]
) -> None:
    """Non-commands, non-text messages and the robot's own messages are 200 and not submitted."""
    client = await serve()
    assert await post(client, body, signed()) == (
        200,
        {"accepted": 0, "duplicate": False, "rejected": []},
    )
    assert recorder.calls == []


async def test_store_unavailable_is_503(serve: Serve, recorder: RecordingSubmit) -> None:
    """When the command cannot be stored the input answers 503, so nothing is acknowledged."""
    recorder.fail = True
    client = await serve()
    status, body = await post(client, callback(), signed())
    assert status == 503
    assert "stored" in body["error"]


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"{not json", 400, "malformed JSON"),
        (b"[]", 422, "expected an object"),
        ({"msgtype": "text", "conversationId": "c"}, 422, "msgId: required"),
    ],
)
async def test_bad_bodies_are_4xx(serve: Serve, body: Any, status: int, error: str) -> None:
    """A signed but unreadable callback is a 4xx naming the problem."""
    client = await serve()
    answer = await post(client, body, signed())
    assert answer[0] == status
    assert error in answer[1]["error"]


@given(st.text(max_size=300))
def test_command_parser_never_raises(text: str) -> None:
    """Any text is a command (what follows `sms`) or not one, and never an exception."""
    result = command_text(text)
    assert result is None or result == result.strip()
    tail = text.strip()
    assert command_text(f"@robot\u2005sms {tail}") == tail


@given(
    secret=st.text(min_size=1, max_size=40),
    timestamp=st.integers(min_value=10**12, max_value=10**13),
    data=st.data(),
)
def test_signature_verifies_what_it_signs_and_nothing_else(
    secret: str, timestamp: int, data: st.DataObject
) -> None:
    """check() accepts sign()'s value and refuses any other byte, timestamp or secret."""
    now = timestamp / 1000
    value = sign(secret, timestamp)
    assert value == reference_sign(secret, str(timestamp))
    assert check(secret, str(timestamp), value, now=now) == ""
    position = data.draw(st.integers(0, len(value) - 1))
    other = "A" if value[position] != "A" else "B"
    forged = value[:position] + other + value[position + 1 :]
    assert check(secret, str(timestamp), forged, now=now) == "bad_signature"
    assert check(secret, str(timestamp + 1), value, now=now) == "bad_signature"
    assert check(secret + "x", str(timestamp), value, now=now) == "bad_signature"
    assert check(secret, str(timestamp), value, now=now + 3601) == "stale_timestamp"


# --- the output ------------------------------------------------------------------------------

Make = Callable[..., DingTalkOutput]


@pytest.fixture
def make(fake: FakeDingTalk, http_session: aiohttp.ClientSession) -> Make:
    def build(**config: Any) -> DingTalkOutput:
        config = {
            "access_token": TOKEN,
            "secret": ROBOT_SECRET,
            "api_url": fake.url,
            "rate_limit": 1000,  # the robot limit (20 a minute) would make tests wait
            **config,
        }
        ctx = PluginContext(name="dt-out", http=http_session, log=structlog.get_logger())
        return DingTalkOutput(DingTalkOutputConfig.model_validate(config), ctx)

    return build


def job(text: str = "SMS #1 to alice", thread: str = THREAD, channel: str = "cid-1") -> Job:
    return Job(id=1, recipient=channel, text=text, payload={"thread": thread})


async def test_post_is_signed_text_mentioning_the_sender(fake: FakeDingTalk, make: Make) -> None:
    """A post is a signed `text` message @-mentioning the person whose command it answers."""
    (outcome,) = await make().deliver([job()])
    assert (outcome.kind, outcome.reason) == (OutcomeKind.SENT, "")
    assert fake.refused == 0
    assert fake.posts == [
        {
            "token": TOKEN,
            "msgtype": "text",
            "text": {"content": "@manager7675 SMS #1 to alice"},
            "at": {"atUserIds": ["manager7675"], "isAtAll": False},
        }
    ]


async def test_without_a_staff_id_or_mentions_the_text_is_plain(
    fake: FakeDingTalk, make: Make
) -> None:
    """No staff id in the thread, or mention_sender off: no @, just the text."""
    await make().deliver([job(thread=f"{MSG_ID}|")])
    await make(mention_sender=False).deliver([job()])
    assert [post.get("at") for post in fake.posts] == [None, None]
    assert fake.texts() == ["SMS #1 to alice"] * 2


async def test_robot_is_chosen_by_channel(fake: FakeDingTalk, make: Make) -> None:
    """A conversation with its own robot posts through it; other channels use the default."""
    output = make(robots={"cid-2": {"access_token": OTHER_TOKEN}})
    await output.deliver([job(channel="cid-2"), job(channel="cid-1")])
    assert [post["token"] for post in fake.posts] == [OTHER_TOKEN, TOKEN]


async def test_long_text_is_split_into_numbered_parts(fake: FakeDingTalk, make: Make) -> None:
    """Past DingTalk's 5000 characters (with the mention) a text goes out as numbered parts."""
    text = ("磁盘已满 disk full " * 400).strip()
    (outcome,) = await make().deliver([job(text)])
    assert outcome.kind is OutcomeKind.SENT
    texts = fake.texts()
    assert len(texts) == 2
    assert texts[0].endswith(" (1/2)")
    assert texts[1].endswith(" (2/2)")
    assert all(t.startswith("@manager7675 ") and len(t) <= 5000 for t in texts)


async def test_long_text_is_truncated_when_splitting_is_off(fake: FakeDingTalk, make: Make) -> None:
    """With split_long: false one post goes out, cut, saying how much was left out."""
    await make(split_long=False, mention_sender=False).deliver([job("x" * 6000)])
    (text,) = fake.texts()
    assert len(text) == DingTalkOutput.max_chars
    assert "truncated" in text


async def test_429_is_retry_with_retry_after(fake: FakeDingTalk, make: Make) -> None:
    """An HTTP 429 waits as long as Retry-After says."""
    fake.answers.append((429, {"errcode": -1, "errmsg": "busy"}, {"Retry-After": "7"}))
    (outcome,) = await make().deliver([job()])
    assert (outcome.kind, outcome.retry_after, outcome.code) == (OutcomeKind.RETRY, 7.0, "429")


@pytest.mark.parametrize(
    ("answer", "kind", "code", "after"),
    [
        (payload("send_too_fast"), OutcomeKind.RETRY, "130101", 600.0),
        ({"errcode": -1, "errmsg": "系统繁忙"}, OutcomeKind.RETRY, "-1", None),
        ({"errcode": 90030, "errmsg": "webhook over limit"}, OutcomeKind.RETRY, "90030", 3600.0),
        (payload("send_token_missing"), OutcomeKind.FAILED, "300001", None),
        ({"errcode": 430104, "errmsg": "含有不合适的内容"}, OutcomeKind.FAILED, "430104", None),
    ],
)
async def test_errcodes_are_classified(
    fake: FakeDingTalk,
    make: Make,
    answer: dict[str, Any],
    kind: OutcomeKind,
    code: str,
    after: float | None,
) -> None:
    """A non-zero errcode in a 200 body is retried when DingTalk says later may work."""
    fake.answers.append((200, answer, {}))
    (outcome,) = await make().deliver([job()])
    assert (outcome.kind, outcome.code, outcome.retry_after) == (kind, code, after)
    assert f"errcode {code}" in outcome.reason


async def test_wrong_robot_secret_fails_at_the_fake(fake: FakeDingTalk, make: Make) -> None:
    """The fake's check is real: a wrong secret gets DingTalk's 310000 and fails the job."""
    (outcome,) = await make(secret="SECwrong-secret-000").deliver([job()])
    assert (outcome.kind, outcome.code, fake.refused) == (OutcomeKind.FAILED, "310000", 1)
    assert "security settings" in outcome.reason


@pytest.mark.parametrize(("status", "kind"), [(502, OutcomeKind.RETRY), (404, OutcomeKind.FAILED)])
async def test_http_errors_are_classified(
    fake: FakeDingTalk, make: Make, status: int, kind: OutcomeKind
) -> None:
    """5xx is retried, other HTTP errors fail; a 200 that is not JSON is retried."""
    fake.answers.append((status, {"message": "upstream"}, {}))
    (outcome,) = await make().deliver([job()])
    assert (outcome.kind, outcome.code) == (kind, str(status))
    fake.answers.append((200, "<html>captive portal</html>", {}))
    assert (await make().deliver([job()]))[0].kind is OutcomeKind.RETRY


async def test_token_and_secret_never_in_reasons_or_logs(fake: FakeDingTalk, make: Make) -> None:
    """An answer echoing the token or secret is redacted before it reaches an outcome."""
    echo = f"token {TOKEN} with secret {ROBOT_SECRET} refused"
    fake.answers += [(200, {"errcode": 1, "errmsg": echo}, {}), (500, {"m": echo}, {})]
    with capture_logs() as logs:
        outcomes = [(await make().deliver([job()]))[0] for _ in range(2)]
    reasons = " ".join(o.reason for o in outcomes)
    assert "<redacted>" in reasons
    assert TOKEN not in reasons + repr(logs)
    assert ROBOT_SECRET not in reasons + repr(logs)


async def test_cannot_connect_is_retry(make: Make) -> None:
    """Nobody listening is a retry whose reason names neither URL nor token."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (outcome,) = await make(api_url=f"http://127.0.0.1:{port}").deliver([job()])
    assert (outcome.kind, outcome.code) == (OutcomeKind.RETRY, "connection")
    assert TOKEN not in outcome.reason


def test_config_defaults_and_errors() -> None:
    """The robot limit is the default pace; empty secrets and odd URLs are refused."""
    config = DingTalkOutputConfig.model_validate({"access_token": TOKEN})
    assert config.rate_limit == pytest.approx(20 / 60)
    assert config.api_url == "https://oapi.dingtalk.com"
    for bad in ({"access_token": ""}, {"access_token": "t", "api_url": "ftp://x"}):
        with pytest.raises(ValidationError):
            DingTalkOutputConfig.model_validate(bad)
    with pytest.raises(ValidationError, match="app_secret"):
        DingTalkInputConfig.model_validate({"reply_output": "o"})


# --- end to end ------------------------------------------------------------------------------


async def test_end_to_end_command_sms_answer_and_reply(
    fake: FakeDingTalk, smsbridge_daemon: DaemonFactory
) -> None:
    """`sms alice …` from DingTalk texts alice, answers in the group, and her reply follows."""
    daemon = await smsbridge_daemon(
        f"""
contacts:
  alice: "{ALICE}"
inputs:
  dt:
    type: dingtalk
    app_secret: ${{DT_APP_SECRET}}
    reply_output: dt-out
    commands: {{allow_users: ["*"]}}
outputs:
  dt-out:
    type: dingtalk
    access_token: ${{DT_TOKEN}}
    secret: ${{DT_SECRET}}
    api_url: {fake.url}
    rate_limit: 100
""",
        types=[DingTalkInput, DingTalkOutput],
        environ={"DT_APP_SECRET": APP_SECRET, "DT_TOKEN": TOKEN, "DT_SECRET": ROBOT_SECRET},
    )
    simulator = daemon.simulator
    assert simulator is not None
    async with (
        aiohttp.ClientSession() as http_session,
        http_session.post(
            daemon.url + "/hooks/dt",
            data=json.dumps(callback(), ensure_ascii=False).encode(),
            headers=signed(),
        ) as response,
    ):
        assert response.status == 200
    await simulator.state.wait_for(lambda s: len(s.messages) == 1)
    (sms,) = simulator.state.messages
    assert (sms.mobile, sms.content) == (ALICE, "你好 disk is full")
    (answer,) = await fake.until(1)
    assert answer["text"]["content"].startswith("@manager7675 SMS #")
    assert answer["at"] == {"atUserIds": ["manager7675"], "isAtAll": False}
    simulator.state.inject_reply(ALICE, "on my way")
    await daemon.poller.poll_replies()
    await daemon.processor.drain()
    reply = (await fake.until(2))[1]
    assert reply["text"]["content"] == "@manager7675 alice: on my way"
    assert fake.refused == 0


async def test_a_captured_signature_is_refused_after_a_restart(
    tmp_path: Path, fake: FakeDingTalk, smsbridge_daemon: DaemonFactory
) -> None:
    """The replay memory is in the store: a signed command is accepted and sent, the daemon
    restarts on the same store, and the captured signature carrying another command is 401."""
    config = f"""
store: {{path: {tmp_path / "shared.sqlite3"}}}
contacts:
  alice: "{ALICE}"
  bob: "15102110087"
inputs:
  dt:
    type: dingtalk
    app_secret: ${{DT_APP_SECRET}}
    reply_output: dt-out
    commands: {{allow_users: ["*"]}}
outputs:
  dt-out:
    type: dingtalk
    access_token: ${{DT_TOKEN}}
    secret: ${{DT_SECRET}}
    api_url: {fake.url}
    rate_limit: 100
"""
    environ = {"DT_APP_SECRET": APP_SECRET, "DT_TOKEN": TOKEN, "DT_SECRET": ROBOT_SECRET}
    types = [DingTalkInput, DingTalkOutput]
    first = await smsbridge_daemon(config, types=types, environ=environ)
    captured = signed()
    status, _ = await post_json(first, "/hooks/dt", callback(), captured)
    assert status == 200
    assert first.simulator is not None
    await first.simulator.state.wait_for(lambda state: len(state.messages) == 1)
    await first.stop()

    second = await smsbridge_daemon(config, types=types, environ=environ)

    def jobs(conn: Any) -> int:
        return int(conn.execute("SELECT count(*) FROM jobs").fetchone()[0])

    queued = await second.store.read(jobs)
    forged = callback(" sms bob wire the money to 6222", msgId="msgForged==")
    with capture_logs() as logs:
        status, body = await post_json(second, "/hooks/dt", forged, captured)
    assert status == 401
    assert body == {"error": "this signature was already used for another message"}
    assert [log["reason"] for log in logs if log["event"] == "auth_failed"] == ["replayed"]
    assert await second.store.read(jobs) == queued  # nothing was queued, so nothing is sent
    assert second.simulator is not None
    assert second.simulator.state.messages == []


async def test_replay_memory_unavailable_is_503_and_nothing_is_submitted(
    tmp_path: Path,
    aiohttp_client: Any,
    http_session: aiohttp.ClientSession,
    recorder: RecordingSubmit,
) -> None:
    """The claim could not be committed (the store is down): 503 so DingTalk retries, never 500."""
    store = SqliteStore(tmp_path / "s.sqlite3")  # never opened: every write is refused
    ctx = PluginContext(
        "dt", http_session, structlog.get_logger(), submit=recorder, replay=StoreReplay(store)
    )
    config = DingTalkInputConfig.model_validate({"app_secret": APP_SECRET, "reply_output": "o"})
    client = await aiohttp_client(input_app(DingTalkInput(config, ctx)))
    status, body = await post(client, callback(), signed())
    assert status == 503
    assert body == {"error": "the command could not be stored; try again later"}
    assert recorder.calls == []
