"""Mattermost: slash commands and outgoing webhooks in, REST API posts out, against a fake."""

from __future__ import annotations

import asyncio
import json
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
from bridge.plugins.mattermost import (
    MattermostInput,
    MattermostInputConfig,
    MattermostOutput,
    MattermostOutputConfig,
)
from bridge.plugins.mattermost.input import command_text
from bridge.runtime.daemon import Daemon
from bridge.runtime.settings import load_settings
from bridge.testing import RecordingSubmit, ServeInput

PAYLOADS = Path(__file__).parent / "payloads"
SLASH_TOKEN = "xr3j5x3p4pfk7p1ea4zqb6kcgr"
HOOK_TOKEN = "mwtbpgt7b3bx7dpnyw4gu6s5ny"
BOT_TOKEN = "b8wd4gfrq7dk8j3ma5ki8ya7de"
BOT_USER = "6m7bfpjh5fgxbq9wq4bt3ys1ur"
CHANNEL = "fhgrhq7hhjd1tynsgotxcqihpc"
ROOT, REPLY = "k4pnh3o7cbyudmxz8zh6oq3hqe", "gz6tg8o9rby4ddxpmg8ro4ybse"
HOOK_PATH = "/hooks/3u7mxgf5ktfyfr1g9chbpm1yqo"
FORM = "application/x-www-form-urlencoded"
ALICE = "15102110086"


def payload(name: str) -> Any:
    return json.loads((PAYLOADS / f"mattermost_{name}.json").read_text(encoding="utf-8"))


@dataclass
class FakeMattermost:
    """/api/v4/posts and an incoming webhook, checking the bot token and root_id as Mattermost
    does (a root_id must name a root post in the same channel)."""

    url: str = ""
    known: dict[str, dict[str, str]] = field(
        default_factory=lambda: {
            ROOT: {"id": ROOT, "channel_id": CHANNEL, "root_id": ""},
            REPLY: {"id": REPLY, "channel_id": CHANNEL, "root_id": ROOT},
        }
    )
    posts: list[dict[str, Any]] = field(default_factory=list)
    hooked: list[dict[str, Any]] = field(default_factory=list)
    lookups: int = 0
    script: list[tuple[int, Any, dict[str, str]]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def _refusal(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {BOT_TOKEN}":
            return web.json_response(payload("error_session"), status=401)
        if self.script:
            status, body, headers = self.script.pop(0)
            return web.json_response(body, status=status, headers=headers)
        return None

    async def create(self, request: web.Request) -> web.Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        body = await request.json()
        root = self.known.get(body.get("root_id") or "")
        if body.get("root_id") and (
            root is None or root["root_id"] or root["channel_id"] != body["channel_id"]
        ):
            return web.json_response(payload("error_root_id"), status=400)
        self.posts.append(body)
        created = payload("post_created") | {
            "id": f"p{len(self.known):025d}",
            "channel_id": body["channel_id"],
            "root_id": body.get("root_id", ""),
            "message": body["message"],
        }
        self.known[created["id"]] = created
        self.changed.set()
        return web.json_response(created, status=201)

    async def get(self, request: web.Request) -> web.Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        self.lookups += 1
        found = self.known.get(request.match_info["id"])
        if found is None:
            return web.json_response(
                {"id": "app.post.get.app_error", "status_code": 404}, status=404
            )
        return web.json_response(payload("post_created") | found)

    async def webhook(self, request: web.Request) -> web.Response:
        if self.script:
            status, body, headers = self.script.pop(0)
            return web.json_response(body, status=status, headers=headers)
        self.hooked.append(await request.json())
        return web.Response(text="ok")

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(10):
            while len(self.posts) < count:
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def fake(aiohttp_server: AiohttpServer) -> FakeMattermost:
    fake = FakeMattermost()
    app = web.Application()
    app.router.add_post("/api/v4/posts", fake.create)
    app.router.add_get("/api/v4/posts/{id}", fake.get)
    app.router.add_post(HOOK_PATH, fake.webhook)
    fake.url = str((await aiohttp_server(app)).make_url("")).rstrip("/")
    return fake


@pytest.fixture
def recorder() -> RecordingSubmit:
    return RecordingSubmit()


Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def client(serve_input: ServeInput) -> Client:
    """A Mattermost input mounted at /hooks/mm in a real aiohttp app."""
    config = {
        "tokens": [SLASH_TOKEN, HOOK_TOKEN],
        "reply_output": "mm_out",
        "ignore_users": [BOT_USER],
    }
    return await serve_input(MattermostInput, "mm", config)


async def send(
    client: Client,
    document: dict[str, Any],
    *,
    as_form: bool = False,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    if as_form:
        data = urlencode(document).encode()
        sent = {"Content-Type": FORM, **(headers or {})}
    else:
        data = json.dumps(document, ensure_ascii=False).encode()
        sent = {"Content-Type": "application/json", **(headers or {})}
    async with client.post("/hooks/mm", data=data, headers=sent) as response:
        return response.status, await response.json()


def hook(text: str, **changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = payload("outgoing_webhook") | {"text": text} | changes
    return document


# --- input ----------------------------------------------------------------------------------


async def test_slash_command_becomes_a_command_event(
    client: Client, recorder: RecordingSubmit
) -> None:
    """/sms with its token (form, plus Authorization: Token) is one command in its thread."""
    status, body = await send(
        client,
        payload("slash_command"),
        as_form=True,
        headers={"Authorization": f"Token {SLASH_TOKEN}"},
    )
    assert (status, body["response_type"]) == (200, "ephemeral")
    ((event,), key, window) = recorder.calls[0]
    assert (event.kind, event.source, event.text) == (
        EventKind.COMMAND,
        "mm",
        "alice 你好 disk is full",
    )
    assert event.labels == {
        "platform": "mattermost",
        "user": "rnina9994bde8mua79zqcg5hmo",
        "user_name": "steve",
        "channel": CHANNEL,
    }
    assert event.conversation is not None
    assert event.conversation.to_json() == {"output": "mm_out", "channel": CHANNEL, "thread": ROOT}
    assert "token" not in event.data
    assert "response_url" not in event.data
    assert (bool(key), window) == (True, 3600.0)


async def test_slash_command_by_get(client: Client, recorder: RecordingSubmit) -> None:
    """A slash command configured with method GET sends its fields in the query."""
    query = urlencode(payload("slash_command") | {"root_id": ""})
    async with client.get(f"/hooks/mm?{query}") as response:
        assert response.status == 200
    conversation = recorder.calls[0][0][0].conversation
    assert conversation is not None
    assert conversation.thread == ""


async def test_outgoing_webhook_json_and_form(client: Client, recorder: RecordingSubmit) -> None:
    """An outgoing webhook's post (JSON or form) is a command answered in a thread on the post."""
    assert await send(client, hook("sms alice 你好 disk is full")) == (200, {})
    assert await send(
        client, hook("sms bob hi", post_id="x" * 26, timestamp="1715000000"), as_form=True
    ) == (200, {})
    first, second = (call[0][0] for call in recorder.calls)
    assert (first.text, second.text) == ("alice 你好 disk is full", "bob hi")
    assert first.conversation is not None
    assert first.conversation.thread == REPLY
    assert recorder.calls[0][1] != recorder.calls[1][1]


async def test_trigger_word_before_the_keyword(client: Client, recorder: RecordingSubmit) -> None:
    """With a trigger word such as @smsbot, `@smsbot sms …` is the command."""
    await send(client, hook("@smsbot sms alice hi", trigger_word="@smsbot"))
    assert recorder.calls[0][0][0].text == "alice hi"


@pytest.mark.parametrize(
    ("document", "headers", "reason"),
    [
        (payload("outgoing_webhook") | {"token": ""}, {}, "missing"),
        (payload("outgoing_webhook") | {"token": "wrong-token-0000000000000"}, {}, "wrong"),
        (payload("slash_command"), {"Authorization": "Token wrong"}, "wrong"),
        ({k: v for k, v in payload("outgoing_webhook").items() if k != "token"}, {}, "missing"),
    ],
    ids=["empty", "wrong", "wrong header", "absent"],
)
async def test_missing_or_wrong_tokens_are_refused(
    client: Client,
    recorder: RecordingSubmit,
    document: dict[str, Any],
    headers: dict[str, str],
    reason: str,
) -> None:
    """Without one of the configured tokens the answer is 401, logged, and nothing is submitted."""
    with capture_logs() as logs:
        status, body = await send(client, document, headers=headers)
    assert status == 401
    assert "error" in body
    assert recorder.calls == []
    assert {"event": "auth_failed", "reason": reason}.items() <= logs[0].items()
    assert SLASH_TOKEN not in repr(logs)
    assert HOOK_TOKEN not in repr(logs)


async def test_other_posts_and_the_bots_own_are_ignored(
    client: Client, recorder: RecordingSubmit
) -> None:
    """Chatter, look-alikes, the bridge's answers and the bot's own posts (ignore_users) are
    answered {} and dropped."""
    for document in (
        hook("hello there", trigger_word=""),
        hook("smsbot alice hi", trigger_word="smsbot"),
        hook("SMS #1 to alice (151****0086): 1 segment(s)", trigger_word=""),
        hook("sms alice loop", user_id=BOT_USER),
    ):
        assert await send(client, document) == (200, {})
    assert recorder.calls == []


async def test_store_unavailable_is_a_503(client: Client, recorder: RecordingSubmit) -> None:
    """When nothing could be stored, the answer is 503, never a false success."""
    recorder.fail = True
    assert (await send(client, hook("sms alice hi")))[0] == 503
    assert (await send(client, payload("slash_command"), as_form=True))[0] == 503


async def test_bad_requests(client: Client, recorder: RecordingSubmit) -> None:
    """Other content types are a 415; a post without ids a 400."""
    async with client.post(
        "/hooks/mm", data=b"x", headers={"Content-Type": "text/plain"}
    ) as response:
        assert response.status == 415
    assert (await send(client, hook("sms a b", post_id="")))[0] == 400
    assert recorder.calls == []


@given(st.text(), st.text(min_size=1).filter(lambda k: not any(c.isspace() for c in k)), st.text())
def test_command_parser_never_raises(text: str, keyword: str, trigger: str) -> None:
    """Any post parses to the text after the keyword, or None."""
    found = command_text(text, keyword, trigger)
    assert found is None or found == found.strip()


# --- output ---------------------------------------------------------------------------------


Make = Callable[..., MattermostOutput]


@pytest.fixture
def make(fake: FakeMattermost, http_session: aiohttp.ClientSession) -> Make:
    def build(**config: Any) -> MattermostOutput:
        if "webhook_url" not in config:
            config.setdefault("token", BOT_TOKEN)
            config.setdefault("server_url", fake.url)
        ctx = PluginContext(name="mm_out", http=http_session, log=structlog.get_logger())
        return MattermostOutput(MattermostOutputConfig.model_validate(config), ctx)

    return build


def job(text: str = "SMS #1 to alice", channel: str = CHANNEL, thread: str = ROOT) -> Job:
    return Job(id=5, recipient=channel, text=text, payload={"thread": thread})


async def test_posts_in_the_thread_as_the_bot(fake: FakeMattermost, make: Make) -> None:
    """A job becomes POST /api/v4/posts with root_id; group mentions are switched off."""
    (outcome,) = await make().deliver([job("@all alice: on my way")])
    assert (outcome.kind, outcome.ref) == (OutcomeKind.SENT, "p0000000000000000000000002")
    assert fake.posts == [
        {
            "channel_id": CHANNEL,
            "message": "@all alice: on my way",
            "root_id": ROOT,
            "props": {"disable_group_highlight": True},
        }
    ]


async def test_a_reply_id_is_resolved_to_its_root_once(fake: FakeMattermost, make: Make) -> None:
    """A thread named by a reply's id is posted under its root, looked up only once."""
    output = make()
    outcomes = await output.deliver([job(thread=REPLY), job(thread=REPLY)])
    assert [o.kind for o in outcomes] == [OutcomeKind.SENT] * 2
    assert [p["root_id"] for p in fake.posts] == [ROOT, ROOT]
    assert fake.lookups == 1


async def test_a_vanished_thread_posts_to_the_channel(fake: FakeMattermost, make: Make) -> None:
    """When the thread is gone, the message goes to the channel instead of being lost."""
    (outcome,) = await make().deliver([job(thread="d" * 26)])
    assert outcome.kind is OutcomeKind.SENT
    assert fake.posts[0]["root_id"] == ""


async def test_long_text_is_split_or_truncated(fake: FakeMattermost, make: Make) -> None:
    """Over 16,383 characters: numbered parts in the thread, or one post saying what was cut."""
    await make().deliver([job("word " * 5000)])
    assert [p["message"][-6:] for p in fake.posts] == [" (1/2)", " (2/2)"]
    assert all(len(p["message"]) <= 16383 and p["root_id"] == ROOT for p in fake.posts)
    await make(split_long=False).deliver([job("x" * 20000)])
    assert len(fake.posts[2]["message"]) <= 16383
    assert "more characters" in fake.posts[2]["message"]


@pytest.mark.parametrize(
    ("status", "headers", "kind", "retry_after"),
    [
        (429, {"Retry-After": "12"}, OutcomeKind.RETRY, 12.0),
        (429, {"X-Ratelimit-Reset": "3"}, OutcomeKind.RETRY, 3.0),
        (500, {}, OutcomeKind.RETRY, None),
        (403, {}, OutcomeKind.FAILED, None),
        (404, {}, OutcomeKind.FAILED, None),
    ],
)
async def test_refusals_are_classified(
    fake: FakeMattermost,
    make: Make,
    status: int,
    headers: dict[str, str],
    kind: OutcomeKind,
    retry_after: float | None,
) -> None:
    """429 (with its wait) and 5xx retry; permission and missing-channel errors fail."""
    fake.script.append(
        (status, {"id": "api.error", "message": "no", "status_code": status}, headers)
    )
    (outcome,) = await make().deliver([job()])
    assert (outcome.kind, outcome.retry_after) == (kind, retry_after)
    assert f"HTTP {status} api.error" in outcome.reason


async def test_a_wrong_token_fails_and_is_never_shown(fake: FakeMattermost, make: Make) -> None:
    """An expired bot token fails the job; a message echoing the token is redacted."""
    (outcome,) = await make(token="wrong-token").deliver([job()])
    assert outcome.kind is OutcomeKind.FAILED
    assert "session_expired" in outcome.reason
    fake.script.append((400, {"id": "x", "message": f"bad token {BOT_TOKEN}"}, {}))
    (outcome,) = await make().deliver([job()])
    assert outcome.kind is OutcomeKind.FAILED
    assert BOT_TOKEN not in outcome.reason


async def test_incoming_webhook_mode(fake: FakeMattermost, make: Make) -> None:
    """With webhook_url, posts go to the webhook; its errors are classified without the URL."""
    url = fake.url + HOOK_PATH
    output = make(webhook_url=url)
    (outcome,) = await output.deliver([job()])
    assert outcome.kind is OutcomeKind.SENT
    assert fake.hooked == [{"text": "SMS #1 to alice", "props": {"disable_group_highlight": True}}]
    fake.script += [(404, {"id": "web.incoming_webhook.invalid.app_error"}, {}), (503, {}, {})]
    gone, busy = await output.deliver([job(), job()])
    assert (gone.kind, busy.kind) == (OutcomeKind.FAILED, OutcomeKind.RETRY)
    assert url not in gone.reason + busy.reason


def test_config_needs_one_way_to_post(tmp_path: Path) -> None:
    """server_url with token, or webhook_url; the report never shows the secrets."""
    path = tmp_path / "config.yaml"
    environ = {"T": BOT_TOKEN, "W": "https://mm.example/hooks/secret-hook-id"}
    for options in (
        "",
        "server_url: https://mm.example",
        "token: ${T}",
        "server_url: https://mm.example\n    token: ${T}\n    webhook_url: ${W}",
    ):
        path.write_text(f"outputs:\n  mm_out:\n    type: mattermost\n    {options}\n")
        with pytest.raises(ConfigError) as error:
            load_settings(path, environ=environ, registry=registry())
        assert "outputs.mm_out" in str(error.value)
        assert BOT_TOKEN not in str(error.value)
        assert "secret-hook-id" not in str(error.value)
    for tokens in ([], [""]):
        with pytest.raises(ValidationError):
            MattermostInputConfig.model_validate({"tokens": tokens, "reply_output": "x"})


# --- end to end -----------------------------------------------------------------------------


def registry() -> Registry:
    """The installed types plus Mattermost's, as its entry points will declare them."""
    found = Registry.discover()
    value = "bridge.plugins.mattermost:{}"
    return Registry(
        inputs={
            **found.inputs,
            "mattermost": [
                EntryPoint("mattermost", value.format("MattermostInput"), "smsbridge.inputs")
            ],
        },
        outputs={
            **found.outputs,
            "mattermost": [
                EntryPoint("mattermost", value.format("MattermostOutput"), "smsbridge.outputs")
            ],
        },
    )


@pytest.fixture
async def daemon(tmp_path: Path, fake: FakeMattermost) -> AsyncIterator[Daemon]:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"store:\n  path: {tmp_path / 'outbox.sqlite3'}\nserver:\n  listen: 127.0.0.1:0\n"
        "polling:\n  replies: 1h\n  reports: 1h\n  balance: 1h\n"
        f'contacts:\n  alice: "{ALICE}"\n'
        "inputs:\n  mm:\n    type: mattermost\n    tokens: ['${MM_HOOK_TOKEN}']\n"
        f"    ignore_users: [{BOT_USER}]\n"
        "    reply_output: mm_out\n    commands: {allow_users: ['*']}\n"
        "outputs:\n  mm_out:\n    type: mattermost\n    token: ${MM_BOT_TOKEN}\n"
        f"    server_url: {fake.url}\n"
    )
    environ = {"MM_HOOK_TOKEN": HOOK_TOKEN, "MM_BOT_TOKEN": BOT_TOKEN}
    settings = load_settings(path, environ=environ, registry=registry())
    daemon = Daemon(settings, simulator_settings=SimulatorSettings(report_delay=0, rate_limit=None))
    await daemon.start()
    yield daemon
    await daemon.stop()


async def test_end_to_end_command_sms_answer_and_reply_in_the_thread(
    daemon: Daemon, fake: FakeMattermost
) -> None:
    """sms alice … written as a reply: the SMS reaches alice; answer and reply go to the thread."""
    assert daemon.simulator is not None
    body = json.dumps(payload("outgoing_webhook") | {"token": HOOK_TOKEN}, ensure_ascii=False)
    async with (
        aiohttp.ClientSession() as http_session,
        http_session.post(
            daemon.url + "/hooks/mm",
            data=body.encode(),
            headers={"Content-Type": "application/json"},
        ) as r,
    ):
        assert r.status == 200
    await daemon.simulator.state.wait_for(lambda s: len(s.messages) == 1)
    (message,) = daemon.simulator.state.messages
    assert message.mobile == ALICE
    assert "你好 disk is full" in message.content
    await fake.wait_for(1)
    assert (fake.posts[0]["channel_id"], fake.posts[0]["root_id"]) == (CHANNEL, ROOT)
    assert "SMS #" in fake.posts[0]["message"]
    daemon.simulator.state.inject_reply(ALICE, "on my way")
    await daemon.poller.poll_replies()
    await daemon.processor.drain()
    await fake.wait_for(2)
    assert fake.posts[1]["root_id"] == ROOT
    assert "on my way" in fake.posts[1]["message"]
