"""Slack: signed slash commands and events in, chat.postMessage posts out, against a fake Slack."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

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

from bridge.config import ConfigError
from bridge.events import EventKind
from bridge.plugin.base import Job, OutcomeKind, PluginContext
from bridge.plugin.registry import Registry
from bridge.plugins.c123.simulator import SimulatorSettings
from bridge.plugins.slack import (
    SlackInput,
    SlackInputConfig,
    SlackOutput,
    SlackOutputConfig,
    check,
    sign,
)
from bridge.plugins.slack.text import command_text, decode
from bridge.runtime.daemon import Daemon
from bridge.runtime.settings import load_settings
from bridge.testing import RecordingSubmit, ServeInput

PAYLOADS = Path(__file__).parent / "payloads"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TOKEN = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"
WEBHOOK_PATH = "/services/T0001/B0001/XXXXXXXXXXXXXXXXXXXXXXXX"
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
ALICE = "15102110086"


def payload(name: str) -> Any:
    return json.loads((PAYLOADS / f"slack_{name}.json").read_text(encoding="utf-8"))


def signed(
    body: bytes, content_type: str, *, secret: str = SECRET, at: float | None = None
) -> dict[str, str]:
    """The headers Slack sends with `body`, signed at `at` (now) with `secret`."""
    timestamp = str(int(time.time() if at is None else at))
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": sign(secret.encode(), timestamp, body),
    }


@dataclass
class FakeSlack:
    """chat.postMessage and an incoming webhook, checking the bot token as Slack does."""

    url: str = ""
    posts: list[dict[str, Any]] = field(default_factory=list)
    hooked: list[dict[str, Any]] = field(default_factory=list)
    # Answers to give before accepting again: (HTTP status, JSON or text body, headers).
    script: list[tuple[int, Any, dict[str, str]]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def post_message(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        if request.content_type != JSON:
            return web.json_response({"ok": False, "error": "invalid_form_data"})
        if self.script:
            return self._scripted()
        body = await request.json()
        self.posts.append(body)
        answer = payload("post_message_ok")
        answer["channel"] = body["channel"]
        answer["ts"] = answer["message"]["ts"] = f"1715000000.{len(self.posts):06d}"
        answer["message"]["text"] = body["text"]
        self.changed.set()
        return web.json_response(answer)

    async def webhook(self, request: web.Request) -> web.Response:
        if self.script:
            return self._scripted()
        self.hooked.append(await request.json())
        return web.Response(text="ok")

    def _scripted(self) -> web.Response:
        status, body, headers = self.script.pop(0)
        if isinstance(body, str):
            return web.Response(status=status, text=body, headers=headers)
        return web.json_response(body, status=status, headers=headers)

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(10):
            while len(self.posts) < count:
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def fake(aiohttp_server: AiohttpServer) -> FakeSlack:
    fake = FakeSlack()
    app = web.Application()
    app.router.add_post("/api/chat.postMessage", fake.post_message)
    app.router.add_post(WEBHOOK_PATH, fake.webhook)
    fake.url = str((await aiohttp_server(app)).make_url(""))
    return fake


@pytest.fixture
def recorder() -> RecordingSubmit:
    return RecordingSubmit()


Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def client(serve_input: ServeInput) -> Client:
    """A Slack input mounted at /hooks/slack in a real aiohttp app."""
    config = {"signing_secret": SECRET, "reply_output": "slack_out"}
    return await serve_input(SlackInput, "slack", config)


async def send(client: Client, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    async with client.post("/hooks/slack", data=body, headers=headers) as response:
        return response.status, await response.text()


def form(fields: dict[str, str]) -> bytes:
    return urlencode(fields).encode()


def event_body(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()


# --- input ----------------------------------------------------------------------------------


async def test_slash_command_becomes_a_command_event(
    client: Client, recorder: RecordingSubmit
) -> None:
    """A signed /sms is one command event answered in the channel, acknowledged ephemerally."""
    body = form(payload("slash_command"))
    status, text = await send(client, body, signed(body, FORM))
    assert status == 200
    assert json.loads(text)["response_type"] == "ephemeral"
    ((event,), key, window) = recorder.calls[0]
    assert (event.kind, event.source, event.text) == (
        EventKind.COMMAND,
        "slack",
        "alice 你好 disk is full",
    )
    assert event.labels == {
        "platform": "slack",
        "user": "U2147483697",
        "user_name": "steve",
        "channel": "C2147483705",
    }
    assert event.conversation is not None
    assert event.conversation.to_json() == {
        "output": "slack_out",
        "channel": "C2147483705",
        "thread": "",
    }
    assert "token" not in event.data
    assert "response_url" not in event.data
    assert event.data["trigger_id"] == payload("slash_command")["trigger_id"]
    assert (bool(key), window) == (True, 3600.0)


async def test_mention_in_a_thread_answers_in_that_thread(
    client: Client, recorder: RecordingSubmit
) -> None:
    """An @mention in a thread is a command whose answers go to the thread's root."""
    body = event_body(payload("app_mention"))
    assert (await send(client, body, signed(body, JSON)))[0] == 200
    ((event,), _, _) = recorder.calls[0]
    assert event.text == "alice 你好 disk is full"
    assert event.conversation is not None
    assert (event.conversation.channel, event.conversation.thread) == (
        "C2147483705",
        "1515449438.000011",
    )
    assert event.data["event"]["user"] == "U2147483697"
    assert "token" not in event.data


async def test_message_outside_a_thread_starts_one(
    client: Client, recorder: RecordingSubmit
) -> None:
    """A channel message `sms balance` is answered in a thread on that message."""
    body = event_body(payload("message"))
    assert (await send(client, body, signed(body, JSON)))[0] == 200
    ((event,), _, _) = recorder.calls[0]
    assert event.text == "balance"
    assert event.conversation is not None
    assert event.conversation.thread == "1355517523.000005"


async def test_retries_and_copies_of_one_message_share_a_dedupe_key(
    client: Client, recorder: RecordingSubmit
) -> None:
    """A retry (X-Slack-Retry-Num) and the message copy of an app_mention name one delivery."""
    mention = payload("app_mention")
    copy = json.loads(json.dumps(mention))
    copy["event"]["type"], copy["event_id"] = "message", "Ev0PV52K99"
    for document, extra in ((mention, {}), (mention, {"X-Slack-Retry-Num": "1"}), (copy, {})):
        body = event_body(document)
        assert (await send(client, body, {**signed(body, JSON), **extra}))[0] == 200
    assert len(recorder.calls) == 3
    assert len({key for _, key, _ in recorder.calls}) == 1


async def test_url_verification_is_answered(client: Client, recorder: RecordingSubmit) -> None:
    """The url_verification handshake gets its challenge back, and nothing is submitted."""
    body = event_body(payload("url_verification"))
    status, text = await send(client, body, signed(body, JSON))
    assert (status, json.loads(text)) == (
        200,
        {"challenge": payload("url_verification")["challenge"]},
    )
    assert recorder.calls == []


def _forgeries() -> list[tuple[str, Callable[[bytes], dict[str, str]], str]]:
    return [
        ("unsigned", lambda body: {"Content-Type": JSON}, "missing"),
        ("wrong secret", lambda body: signed(body, JSON, secret="not-the-secret"), "bad_signature"),
        ("altered body", lambda body: signed(body + b" ", JSON), "bad_signature"),
        ("replayed", lambda body: signed(body, JSON, at=time.time() - 301), "stale"),
        ("from the future", lambda body: signed(body, JSON, at=time.time() + 400), "stale"),
        (
            "odd timestamp",
            lambda body: {**signed(body, JSON), "X-Slack-Request-Timestamp": "1e9"},
            "bad_timestamp",
        ),
    ]


@pytest.mark.parametrize(
    ("case", "headers", "reason"), _forgeries(), ids=[f[0] for f in _forgeries()]
)
async def test_forged_unsigned_and_replayed_requests_are_refused(
    client: Client,
    recorder: RecordingSubmit,
    case: str,
    headers: Callable[[bytes], dict[str, str]],
    reason: str,
) -> None:
    """Anything not signed by Slack within 5 minutes is a 401 with a reason, and never a command."""
    body = event_body(payload("app_mention"))
    with capture_logs() as logs:
        status, text = await send(client, body, headers(body))
    assert status == 401
    assert "error" in json.loads(text)
    assert recorder.calls == []
    assert {"event": "auth_failed", "reason": reason}.items() <= logs[0].items()
    assert SECRET not in repr(logs) + text


async def test_other_messages_are_acknowledged_and_ignored(
    client: Client, recorder: RecordingSubmit
) -> None:
    """Chatter, look-alike words, edits, other event types and bots' posts submit nothing."""
    documents = []
    for text in ("hello there", "smsbot alice hi", "please sms alice"):
        document = payload("message")
        document["event"]["text"] = text
        documents.append(document)
    edited = payload("message")
    edited["event"]["subtype"] = "message_changed"
    ours = payload("message")
    ours["event"]["user"] = "U0LAN0Z89"  # the app's own bot user (authorizations)
    other = payload("message")
    other["event"] = {"type": "reaction_added", "user": "U1"}
    for document in (*documents, edited, ours, other, payload("bot_message")):
        body = event_body(document)
        assert await send(client, body, signed(body, JSON)) == (200, "")
    assert recorder.calls == []


async def test_slack_markup_is_decoded(client: Client, recorder: RecordingSubmit) -> None:
    """Links, escaped characters and the bot's mention are turned back into what was typed."""
    document = payload("message")
    document["event"]["text"] = (
        "<@U0LAN0Z89> SMS <tel:+8615102110086|+86 151 0211 0086> a &amp; b &lt;3"
    )
    body = event_body(document)
    await send(client, body, signed(body, JSON))
    assert recorder.calls[0][0][0].text == "+86 151 0211 0086 a & b <3"


async def test_store_unavailable_is_a_503(client: Client, recorder: RecordingSubmit) -> None:
    """When nothing could be stored, Slack is told to retry (events) or the user sees a failure."""
    recorder.fail = True
    slash = form(payload("slash_command"))
    event = event_body(payload("app_mention"))
    assert (await send(client, slash, signed(slash, FORM)))[0] == 503
    assert (await send(client, event, signed(event, JSON)))[0] == 503


async def test_ssl_check_and_wrong_content_type(client: Client, recorder: RecordingSubmit) -> None:
    """Slack's ssl_check is answered empty; a signed body of another type is a 415."""
    body = form({"ssl_check": "1", "token": "x"})
    assert await send(client, body, signed(body, FORM)) == (200, "")
    body = b"sms alice hi"
    assert (await send(client, body, signed(body, "text/plain")))[0] == 415
    assert recorder.calls == []


@given(st.binary(max_size=200), st.integers(0, 2**33), st.data())
def test_signature_verifies_what_it_signs_and_nothing_else(
    body: bytes, at: int, data: st.DataObject
) -> None:
    """check() accepts exactly what sign() signed; any altered byte or second is refused."""
    signature = sign(SECRET.encode(), at, body)
    assert check(SECRET.encode(), str(at), signature, body, now=at + 299) == ""
    assert check(SECRET.encode(), str(at), signature, body, now=at + 301) == "stale"
    assert check(SECRET.encode(), str(at + 1), signature, body, now=at) == "bad_signature"
    index = data.draw(st.integers(0, len(signature) - 1))
    flipped = signature[:index] + chr(ord(signature[index]) ^ 1) + signature[index + 1 :]
    assert check(SECRET.encode(), str(at), flipped, body, now=at) == "bad_signature"
    if body:
        i = data.draw(st.integers(0, len(body) - 1))
        altered = body[:i] + bytes([body[i] ^ 0x01]) + body[i + 1 :]
        assert check(SECRET.encode(), str(at), signature, altered, now=at) == "bad_signature"


@given(st.text(), st.text(min_size=1).filter(lambda k: not any(c.isspace() for c in k)))
def test_command_parser_never_raises(text: str, keyword: str) -> None:
    """Any text parses to a command text or None; decode() takes anything too."""
    found = command_text(text, keyword, bots={"U0LAN0Z89"}, any_mention=True)
    assert found is None or found == found.strip()
    decode(text)


# --- output ---------------------------------------------------------------------------------


Make = Callable[..., SlackOutput]


@pytest.fixture
def make(fake: FakeSlack, http_session: aiohttp.ClientSession) -> Make:
    def build(**config: Any) -> SlackOutput:
        if "webhook_url" not in config:
            config.setdefault("token", TOKEN)
            config.setdefault("api_url", fake.url + "/api")
        ctx = PluginContext(name="slack_out", http=http_session, log=structlog.get_logger())
        return SlackOutput(SlackOutputConfig.model_validate(config), ctx)

    return build


def job(
    text: str = "SMS #1 to alice", channel: str = "C2147483705", thread: str = "1515449438.000011"
) -> Job:
    return Job(id=5, recipient=channel, text=text, payload={"thread": thread})


async def test_posts_in_the_thread_with_the_bot_token(fake: FakeSlack, make: Make) -> None:
    """A job becomes chat.postMessage in its channel and thread; the ref is the post's ts."""
    (outcome,) = await make().deliver([job("<!channel> a & b")])
    assert (outcome.kind, outcome.ref) == (OutcomeKind.SENT, "1715000000.000001")
    assert fake.posts == [
        {
            "channel": "C2147483705",
            "text": "&lt;!channel&gt; a &amp; b",
            "thread_ts": "1515449438.000011",
        }
    ]


async def test_default_channel_and_no_thread(fake: FakeSlack, make: Make) -> None:
    """A job without channel or thread posts top-level into the configured channel."""
    (outcome,) = await make(channel="C999").deliver([job(channel="", thread="")])
    assert outcome.kind is OutcomeKind.SENT
    assert fake.posts == [{"channel": "C999", "text": "SMS #1 to alice"}]


async def test_long_text_is_split_into_numbered_parts(fake: FakeSlack, make: Make) -> None:
    """A text over 4,000 characters becomes numbered posts in the same thread."""
    (outcome,) = await make().deliver([job("word " * 1700)])
    assert outcome.kind is OutcomeKind.SENT
    assert len(outcome.ref.split(",")) == 3
    assert [p["text"][-6:] for p in fake.posts] == [" (1/3)", " (2/3)", " (3/3)"]
    assert all(len(p["text"]) <= 4000 and p["thread_ts"] == "1515449438.000011" for p in fake.posts)


async def test_long_text_is_truncated_when_not_split(fake: FakeSlack, make: Make) -> None:
    """With split_long false, one post says how much was cut."""
    await make(split_long=False).deliver([job("x" * 5000)])
    (post,) = fake.posts
    assert len(post["text"]) <= 4000
    assert post["text"].endswith("more characters)")


@pytest.mark.parametrize(
    ("status", "body", "kind", "retry_after"),
    [
        (429, {"ok": False, "error": "ratelimited"}, OutcomeKind.RETRY, 30.0),
        (200, {"ok": False, "error": "ratelimited"}, OutcomeKind.RETRY, None),
        (200, {"ok": False, "error": "internal_error"}, OutcomeKind.RETRY, None),
        (503, "upstream busy", OutcomeKind.RETRY, None),
        (200, payload("post_message_error"), OutcomeKind.FAILED, None),
        (200, {"ok": False, "error": "not_in_channel"}, OutcomeKind.FAILED, None),
        (200, {"ok": False, "error": "is_archived"}, OutcomeKind.FAILED, None),
        (200, "<html>proxy</html>", OutcomeKind.RETRY, None),
    ],
)
async def test_refusals_are_classified(
    fake: FakeSlack,
    make: Make,
    status: int,
    body: Any,
    kind: OutcomeKind,
    retry_after: float | None,
) -> None:
    """429 and Slack's transient errors retry (with Retry-After); channel errors fail."""
    fake.script.append((status, body, {"Retry-After": "30"} if status == 429 else {}))
    (outcome,) = await make().deliver([job()])
    assert (outcome.kind, outcome.retry_after) == (kind, retry_after)
    if isinstance(body, dict):
        assert body["error"] in outcome.reason


async def test_a_wrong_token_fails_and_is_never_shown(fake: FakeSlack, make: Make) -> None:
    """invalid_auth fails the job; neither it nor a hostile error body reveals the token."""
    (outcome,) = await make(token="xoxb-wrong-token").deliver([job()])
    assert outcome.kind is OutcomeKind.FAILED
    assert "invalid_auth" in outcome.reason
    fake.script.append((200, {"ok": False, "error": f"bad {TOKEN}"}, {}))
    (outcome,) = await make().deliver([job()])
    assert outcome.kind is OutcomeKind.FAILED
    assert TOKEN not in outcome.reason
    assert "unknown_error" in outcome.reason


async def test_incoming_webhook_mode(fake: FakeSlack, make: Make) -> None:
    """With webhook_url, posts go to the webhook; its errors are classified without the URL."""
    url = fake.url + WEBHOOK_PATH
    output = make(webhook_url=url)
    (outcome,) = await output.deliver([job()])
    assert outcome.kind is OutcomeKind.SENT
    assert fake.hooked == [{"text": "SMS #1 to alice", "thread_ts": "1515449438.000011"}]
    fake.script += [(404, "no_service", {}), (429, "rate limited", {"Retry-After": "7"})]
    gone, busy = await output.deliver([job(), job()])
    assert (gone.kind, busy.kind, busy.retry_after) == (OutcomeKind.FAILED, OutcomeKind.RETRY, 7.0)
    assert "no_service" in gone.reason
    assert url not in gone.reason + busy.reason


def test_config_needs_exactly_one_way_to_post(tmp_path: Path) -> None:
    """Token or webhook_url, not both or neither; the report never shows the secrets."""
    path = tmp_path / "config.yaml"
    environ = {"T": TOKEN, "W": "https://hooks.slack.com" + WEBHOOK_PATH, "E": ""}
    for options in ("", "token: ${E}", "token: ${T}\n    webhook_url: ${W}"):
        path.write_text(f"outputs:\n  out:\n    type: slack\n    {options}\n")
        with pytest.raises(ConfigError) as error:
            load_settings(path, environ=environ, registry=registry())
        assert "outputs.out" in str(error.value)
        assert TOKEN not in str(error.value)
        assert WEBHOOK_PATH not in str(error.value)
    with pytest.raises(ValidationError):
        SlackInputConfig.model_validate({"signing_secret": "", "reply_output": "x"})


# --- end to end -----------------------------------------------------------------------------


def registry() -> Registry:
    """The installed types plus Slack's, as its entry points will declare them."""
    found = Registry.discover()
    value = "bridge.plugins.slack:{}"
    return Registry(
        inputs={
            **found.inputs,
            "slack": [EntryPoint("slack", value.format("SlackInput"), "smsbridge.inputs")],
        },
        outputs={
            **found.outputs,
            "slack": [EntryPoint("slack", value.format("SlackOutput"), "smsbridge.outputs")],
        },
    )


@pytest.fixture
async def daemon(tmp_path: Path, fake: FakeSlack) -> AsyncIterator[Daemon]:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"store:\n  path: {tmp_path / 'outbox.sqlite3'}\nserver:\n  listen: 127.0.0.1:0\n"
        "polling:\n  replies: 1h\n  reports: 1h\n  balance: 1h\n"
        f'contacts:\n  alice: "{ALICE}"\n'
        "inputs:\n  slack:\n    type: slack\n    signing_secret: ${SLACK_SIGNING_SECRET}\n"
        "    reply_output: slack_out\n    commands: {allow_users: ['*']}\n"
        "outputs:\n  slack_out:\n    type: slack\n    token: ${SLACK_BOT_TOKEN}\n"
        f"    api_url: {fake.url}/api\n"
    )
    environ = {"SLACK_SIGNING_SECRET": SECRET, "SLACK_BOT_TOKEN": TOKEN}
    settings = load_settings(path, environ=environ, registry=registry())
    daemon = Daemon(settings, simulator_settings=SimulatorSettings(report_delay=0, rate_limit=None))
    await daemon.start()
    yield daemon
    await daemon.stop()


async def test_end_to_end_command_sms_answer_and_reply_in_the_thread(
    daemon: Daemon, fake: FakeSlack
) -> None:
    """sms alice … in a thread: the SMS reaches alice; the answer and her reply go to the thread."""
    assert daemon.simulator is not None
    body = event_body(payload("app_mention"))
    async with (
        aiohttp.ClientSession() as http_session,
        http_session.post(daemon.url + "/hooks/slack", data=body, headers=signed(body, JSON)) as r,
    ):
        assert r.status == 200
    await daemon.simulator.state.wait_for(lambda s: len(s.messages) == 1)
    (message,) = daemon.simulator.state.messages
    assert message.mobile == ALICE
    assert "你好 disk is full" in message.content
    await fake.wait_for(1)
    thread = "1515449438.000011"
    assert (fake.posts[0]["channel"], fake.posts[0]["thread_ts"]) == ("C2147483705", thread)
    assert "SMS #" in fake.posts[0]["text"]
    daemon.simulator.state.inject_reply(ALICE, "on my way")
    await daemon.poller.poll_replies()
    await daemon.processor.drain()
    await fake.wait_for(2)
    assert fake.posts[1]["thread_ts"] == thread
    assert "on my way" in fake.posts[1]["text"]
