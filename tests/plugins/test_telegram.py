"""Telegram: webhook updates in (secret token, commands, dedupe), sendMessage out, end to end."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import strategies as st
from pytest_aiohttp import AiohttpServer
from structlog.testing import capture_logs

from bridge.config import ConfigError
from bridge.events import Conversation, EventKind
from bridge.plugin.base import Job, OutcomeKind, PluginContext
from bridge.plugin.registry import INPUTS, OUTPUTS, Registry
from bridge.plugins.c123.simulator import SimulatorSettings
from bridge.plugins.telegram import (
    TelegramInput,
    TelegramOutput,
    TelegramOutputConfig,
)
from bridge.plugins.telegram.update import command_text, find_command, parse_thread, thread_ref
from bridge.runtime.daemon import Daemon
from bridge.runtime.settings import load_settings
from bridge.testing import RecordingSubmit, ServeInput

PAYLOADS = Path(__file__).parent / "payloads"
SECRET = "webhook-Secret_0123456789"
TOKEN = "7012345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
CHAT = -1001987654321
ALICE = "15102110086"
SEND_FIELDS = {"chat_id", "text", "message_thread_id", "reply_parameters"}


def payload(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / f"telegram_{name}.json").read_bytes())
    return data


@dataclass
class FakeTelegram:
    """A Bot API server: checks the token in the path and sendMessage's fields as Telegram does,
    records accepted posts, and answers with the documented payloads (scripted ones first)."""

    url: str = ""
    # (HTTP status, payload name or "" for an HTML error page), answered before the default.
    script: list[tuple[int, str]] = field(default_factory=list)
    posts: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    next_id: int = 2000
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def send_message(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != TOKEN:
            self.refused.append("token")
            return web.json_response(payload("sendmessage_401"), status=401)
        body = await request.json()
        text = body.get("text")
        if not isinstance(text, str) or not 1 <= len(text) <= 4096:
            self.refused.append("length")
            return web.json_response(payload("sendmessage_too_long"), status=400)
        if not isinstance(body.get("chat_id"), int | str) or not set(body) <= SEND_FIELDS:
            self.refused.append(f"fields: {body}")
            return web.json_response(payload("sendmessage_400"), status=400)
        if self.script:
            status, name = self.script.pop(0)
            if not name:  # a proxy in front of the Bot API, answering with its own page
                return web.Response(status=status, text="<html>Bad Gateway</html>")
            return web.json_response(payload(name), status=status)
        self.next_id += 1
        self.posts.append(body)
        self.changed.set()
        answer = payload("sendmessage_ok")
        answer["result"].update(message_id=self.next_id, text=text)
        return web.json_response(answer)

    async def until(self, predicate: Callable[[list[dict[str, Any]]], bool]) -> None:
        """Wait (at most 10 s) until the recorded posts satisfy `predicate`."""
        async with asyncio.timeout(10):
            while not predicate(self.posts):
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def fake(aiohttp_server: AiohttpServer) -> FakeTelegram:
    telegram = FakeTelegram()
    app = web.Application()
    app.router.add_post("/bot{token}/sendMessage", telegram.send_message)
    server = await aiohttp_server(app)
    telegram.url = str(server.make_url("")).rstrip("/")
    return telegram


Client = TestClient[web.Request, web.Application]


@pytest.fixture
def serve(serve_input: ServeInput) -> Callable[..., Awaitable[Client]]:
    """Mount a telegram input at /hooks/tg in a real aiohttp app and return a client."""

    async def start(**options: Any) -> Client:
        config = {"secret_token": SECRET, "reply_output": "tg-out", **options}
        return await serve_input(TelegramInput, "tg", config)

    return start


async def deliver(client: Client, update: Any, secret: str | None = SECRET) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    data = update if isinstance(update, bytes) else json.dumps(update).encode()
    async with client.post("/hooks/tg", data=data, headers=headers) as response:
        return response.status, await response.json()


async def test_command_becomes_an_event(serve: Any, recorder: RecordingSubmit) -> None:
    """`/sms@Bot ...` gives a command Event answering in the chat, replying to the message."""
    client = await serve(bot_username="SmsBridgeBot")
    update = payload("update_command")
    assert await deliver(client, update) == (
        200,
        {"accepted": 1, "duplicate": False, "rejected": []},
    )
    ((event,), key, window) = recorder.calls[0]
    assert (event.kind, event.source, event.text, event.data) == (
        EventKind.COMMAND,
        "tg",
        "alice 你好 disk is full",
        update,
    )
    labels = {"platform": "telegram", "user": "5551234567", "user_name": "liwei_ops"}
    assert event.labels == {**labels, "channel": str(CHAT)}
    assert event.conversation == Conversation("tg-out", str(CHAT), "1365")
    assert window == 24 * 3600.0
    await deliver(client, update)  # Telegram's redelivery of the same update
    assert recorder.calls[1][1] == key


async def test_forum_topic_command_answers_in_its_topic(
    serve: Any, recorder: RecordingSubmit
) -> None:
    """In a forum topic the thread names the topic and the message: "42/1402"."""
    client = await serve()
    assert (await deliver(client, payload("update_topic")))[0] == 200
    (event,) = recorder.calls[0][0]
    assert event.text == "status 12"
    assert event.conversation == Conversation("tg-out", str(CHAT), "42/1402")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/sms alice hi", "alice hi"),
        ("/sms@SmsBridgeBot alice hi", "alice hi"),
        ("/sms@smsbridgebot   alice  hi ", "alice  hi"),
        ("sms alice hi", "alice hi"),
        ("SMS help", "help"),
        ("/sms", ""),
        ("  sms\nbalance", "balance"),
        ("/sms@OtherBot alice hi", None),
        ("/smsx alice", None),
        ("smsalice hi", None),
        ("please sms alice", None),
        ("/help", None),
    ],
)
def test_command_forms(text: str, expected: str | None) -> None:
    """Slash command (also @this bot), or `sms` as the first word; anything else is not ours."""
    assert command_text(text, "SmsBridgeBot") == expected


@pytest.mark.parametrize(
    ("name", "change"),
    [
        ("update_chat", None),
        ("update_edited", None),
        ("update_command", lambda m: m["from"].update(is_bot=True, username="SmsBridgeBot")),
        ("update_command", lambda m: m.update(text=None, photo=[{"file_id": "x"}])),
        ("update_command", lambda m: m.pop("from")),
    ],
    ids=["chatter", "edit", "bot", "photo", "no-sender"],
)
async def test_other_updates_are_acknowledged_and_ignored(
    serve: Any, recorder: RecordingSubmit, name: str, change: Callable[[Any], Any] | None
) -> None:
    """Chatter, edits, bots' own messages and non-text messages are 200 and submit nothing."""
    client = await serve()
    update = payload(name)
    if change is not None:
        change(update["message"])
    assert await deliver(client, update) == (
        200,
        {"accepted": 0, "duplicate": False, "rejected": []},
    )
    assert recorder.calls == []


async def test_secret_token_is_required(serve: Any, recorder: RecordingSubmit) -> None:
    """A missing or wrong secret token is 401, logged as auth_failed, never echoed or submitted."""
    client = await serve()
    texts: list[str] = []
    with capture_logs() as logs:
        for given_secret in (None, "", SECRET + "x", SECRET[:-1], SECRET.upper()):
            status, body = await deliver(client, payload("update_command"), given_secret)
            assert status == 401
            texts.append(json.dumps(body))
    assert recorder.calls == []
    failures = [log for log in logs if log["event"] == "auth_failed"]
    assert [log["reason"] for log in failures] == ["missing"] * 2 + ["wrong"] * 3
    assert SECRET not in repr(logs) + "".join(texts)


async def test_store_unavailable_is_503(serve: Any, recorder: RecordingSubmit) -> None:
    """When the command cannot be stored the answer is 503, so Telegram delivers it again."""
    recorder.fail = True
    client = await serve()
    assert (await deliver(client, payload("update_command")))[0] == 503


@pytest.mark.parametrize(
    ("body", "status"),
    [(b"{not json", 400), (b"[1, 2]", 422), (b'{"message": {}}', 422), (b"x" * 300_000, 413)],
)
async def test_malformed_bodies_are_refused(serve: Any, body: bytes, status: int) -> None:
    """Broken JSON, a non-object, no update_id and an oversized body get their 4xx."""
    client = await serve()
    assert (await deliver(client, body))[0] == status


def registry() -> Registry:
    """The installed adapters plus telegram's, until pyproject.toml registers them."""
    found = Registry.discover()
    ep = "bridge.plugins.telegram:{}"
    found.inputs["telegram"] = [EntryPoint("telegram", ep.format("TelegramInput"), INPUTS)]
    found.outputs["telegram"] = [EntryPoint("telegram", ep.format("TelegramOutput"), OUTPUTS)]
    return found


def test_config_refuses_bad_secrets_without_echoing_them(tmp_path: Path) -> None:
    """A secret_token setWebhook would refuse, or a mangled bot token, is named but not shown."""
    path = tmp_path / "config.yaml"
    path.write_text(
        "inputs:\n  tg: {type: telegram, secret_token: '${TG_SECRET}', reply_output: out}\n"
        "outputs:\n  out: {type: telegram, token: '${TG_TOKEN}'}\n"
    )
    environ = {"TG_SECRET": "has space!", "TG_TOKEN": f"https://x/bot{TOKEN}"}
    with pytest.raises(ConfigError) as bad:
        load_settings(path, environ=environ, registry=registry())
    report = str(bad.value)
    assert "secret_token must be 1-256 characters" in report
    assert "token must be a bot token" in report
    assert "has space!" not in report
    assert TOKEN not in report


@given(st.text())
def test_command_parser_never_raises(text: str) -> None:
    """Any text is a command or not; `/sms <x>` is always the command `<x>` stripped."""
    command_text(text, "SmsBridgeBot")
    assert command_text("/sms " + text) == text.strip()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


PARTS = st.dictionaries(st.sampled_from(["id", "is_bot", "username"]), JSON)
MESSAGES = st.dictionaries(
    st.sampled_from(
        ["from", "chat", "text", "message_id", "message_thread_id", "is_topic_message"]
    ),
    JSON | PARTS | st.sampled_from(["/sms alice hi", "sms"]),
)


@given(st.dictionaries(st.sampled_from(["update_id", "message"]), JSON), JSON | MESSAGES)
def test_update_reader_never_raises(update: dict[str, Any], message: Any) -> None:
    """Whatever shape an update has, it is read as a command or a reason, never an exception."""
    find_command(update, None)
    found = find_command({"update_id": 1, "message": message}, "SmsBridgeBot")
    assert isinstance(found, str) or found.text == "alice hi" or found.text == ""


@given(st.integers(min_value=1), st.none() | st.integers(min_value=1))
def test_thread_round_trips(message_id: int, topic: int | None) -> None:
    """The thread the input writes is read back by the output as the same topic and message."""
    assert parse_thread(thread_ref(message_id, topic)) == (topic, message_id)


# --- the output -------------------------------------------------------------------------------


def output(
    fake: FakeTelegram, http_session: aiohttp.ClientSession, **options: Any
) -> TelegramOutput:
    config = {"token": TOKEN, "api_url": fake.url, "rate_limit": 1000, **options}
    ctx = PluginContext(name="tg-out", http=http_session, log=structlog.get_logger())
    return TelegramOutput(TelegramOutputConfig.model_validate(config), ctx)


def job(text: str = "sent to alice", thread: str = "1365", recipient: str = str(CHAT)) -> Job:
    return Job(id=5, recipient=recipient, text=text, payload={"thread": thread})


async def test_post_replies_in_the_thread(
    fake: FakeTelegram, http_session: aiohttp.ClientSession
) -> None:
    """A job becomes sendMessage to its chat, replying to the command (in its topic, if any)."""
    tg = output(fake, http_session)
    outcomes = await tg.deliver([job(), job(thread="42/1402"), job(thread="", recipient="")])
    assert [(o.kind, o.ref) for o in outcomes][:2] == [
        (OutcomeKind.SENT, "2001"),
        (OutcomeKind.SENT, "2002"),
    ]
    reply = {"message_id": 1365, "allow_sending_without_reply": True}
    assert fake.posts[0] == {"chat_id": CHAT, "text": "sent to alice", "reply_parameters": reply}
    assert fake.posts[1]["message_thread_id"] == 42
    assert fake.posts[1]["reply_parameters"]["message_id"] == 1402
    # No chat in the job and none configured: nothing to post to.
    assert (outcomes[2].kind, outcomes[2].code) == (OutcomeKind.FAILED, "400")
    (default,) = await output(fake, http_session, channel="@ops_alerts").deliver(
        [job(recipient="")]
    )
    assert default.kind is OutcomeKind.SENT
    assert fake.posts[2]["chat_id"] == "@ops_alerts"


async def test_long_text_is_split_or_truncated(
    fake: FakeTelegram, http_session: aiohttp.ClientSession
) -> None:
    """Over 4096 characters: numbered parts in the same thread, or one cut part if asked."""
    text = "磁盘已满 " * 2000  # 10,000 characters
    (split,) = await output(fake, http_session).deliver([job(text)])
    assert split.kind is OutcomeKind.SENT
    assert len(split.ref.split(",")) == 3
    assert [p["text"][-6:] for p in fake.posts] == [" (1/3)", " (2/3)", " (3/3)"]
    assert all(p["reply_parameters"]["message_id"] == 1365 for p in fake.posts)
    (cut,) = await output(fake, http_session, split_long=False).deliver([job(text)])
    assert cut.kind is OutcomeKind.SENT
    assert len(fake.posts) == 4
    assert len(fake.posts[3]["text"]) <= 4096
    assert fake.posts[3]["text"].endswith("more characters)")
    assert fake.refused == []


@pytest.mark.parametrize(
    ("status", "name", "kind", "after", "words"),
    [
        (429, "sendmessage_429", OutcomeKind.RETRY, 7.0, "Too Many Requests"),
        (400, "sendmessage_400", OutcomeKind.FAILED, None, "chat not found"),
        (403, "sendmessage_403", OutcomeKind.FAILED, None, "bot was kicked"),
        (400, "sendmessage_migrated", OutcomeKind.FAILED, None, "now -1001987654321"),
        (502, "", OutcomeKind.RETRY, None, "HTTP 502"),
    ],
)
async def test_refusals_are_classified(
    fake: FakeTelegram,
    http_session: aiohttp.ClientSession,
    status: int,
    name: str,
    kind: OutcomeKind,
    after: float | None,
    words: str,
) -> None:
    """429 waits retry_after, 5xx retries, 400/403 fail; reasons quote Telegram, never the token."""
    fake.script = [(status, name)]
    (outcome,) = await output(fake, http_session).deliver([job()])
    assert (outcome.kind, outcome.retry_after, outcome.code) == (kind, after, str(status))
    assert words in outcome.reason
    assert TOKEN not in outcome.reason


async def test_wrong_token_and_dead_server_never_show_the_token(
    fake: FakeTelegram, http_session: aiohttp.ClientSession
) -> None:
    """A refused token fails and an unreachable server retries; neither reason holds the token."""
    other = TOKEN.replace("AAH", "BBH")
    (refused,) = await output(fake, http_session, token=other).deliver([job()])
    assert (refused.kind, refused.code) == (OutcomeKind.FAILED, "401")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (unreachable,) = await output(fake, http_session, api_url=f"http://127.0.0.1:{port}").deliver(
        [job()]
    )
    assert (unreachable.kind, unreachable.code) == (OutcomeKind.RETRY, "connection")
    assert all(t not in r.reason for t in (TOKEN, other) for r in (refused, unreachable))


# --- end to end -------------------------------------------------------------------------------


@pytest.fixture
async def daemon(tmp_path: Path, fake: FakeTelegram) -> AsyncIterator[Daemon]:
    path = tmp_path / "config.yaml"
    path.write_text(f"""
server: {{listen: "127.0.0.1:0"}}
store: {{path: {tmp_path / "outbox.sqlite3"}}}
polling: {{replies: 1h, reports: 1h, balance: 1h}}
contacts:
  alice: "{ALICE}"
inputs:
  tg:
    type: telegram
    secret_token: ${{TG_SECRET}}
    bot_username: SmsBridgeBot
    reply_output: tg-out
    commands: {{allow_users: ["*"]}}
outputs:
  tg-out: {{type: telegram, token: "${{TG_TOKEN}}", api_url: "{fake.url}", rate_limit: 100}}
""")
    settings = load_settings(
        path, environ={"TG_SECRET": SECRET, "TG_TOKEN": TOKEN}, registry=registry()
    )
    daemon = Daemon(settings, simulator_settings=SimulatorSettings(report_delay=0, rate_limit=None))
    await daemon.start()
    yield daemon
    await daemon.stop()


def replies_to(message_id: int) -> Callable[[dict[str, Any]], bool]:
    return lambda post: post.get("reply_parameters", {}).get("message_id") == message_id


async def test_command_to_sms_and_the_reply_back_into_the_thread(
    daemon: Daemon, fake: FakeTelegram
) -> None:
    """`/sms alice ...` texts alice, the answer and alice's reply both reply to the command."""
    assert daemon.simulator is not None
    sim = daemon.simulator.state
    update = payload("update_command")
    async with aiohttp.ClientSession() as http_session:
        client_headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
        async with http_session.post(
            daemon.url + "/hooks/tg", json=update, headers=client_headers
        ) as r:
            assert r.status == 200
        await sim.wait_for(lambda s: len(s.messages) == 1, timeout=10)
        (sms,) = sim.messages
        assert sms.mobile == ALICE
        assert "你好 disk is full" in sms.content
        in_thread = replies_to(1365)
        await fake.until(lambda posts: any(in_thread(p) for p in posts))
        assert all(p["chat_id"] == CHAT for p in fake.posts)

        sim.inject_reply(ALICE, "on my way")
        await daemon.poller.poll_replies()
        await daemon.processor.drain()
        await fake.until(
            lambda posts: any(in_thread(p) and "on my way" in p["text"] for p in posts)
        )

        # Telegram delivering the same update again must not text alice twice.
        async with http_session.post(
            daemon.url + "/hooks/tg", json=update, headers=client_headers
        ) as r:
            assert (r.status, (await r.json())["duplicate"]) == (200, True)
        forged = {"X-Telegram-Bot-Api-Secret-Token": "guess"}
        async with http_session.post(daemon.url + "/hooks/tg", json=update, headers=forged) as r:
            assert r.status == 401
    assert len(sim.messages) == 1
    assert fake.refused == []
