"""Feishu: encrypted, signed events in, thread replies and signed bot webhooks out, end to end."""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import hmac
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from pytest_aiohttp import AiohttpServer
from structlog.testing import capture_logs

from bridge.events import EventKind
from bridge.plugin.base import Job, OutcomeKind, PluginContext
from bridge.plugins.feishu import (
    DecryptError,
    FeishuInput,
    FeishuInputConfig,
    FeishuOutput,
    FeishuOutputConfig,
    check_event,
    command_text,
    decrypt,
    webhook_sign,
)
from bridge.testing import DaemonFactory, RecordingSubmit, ServeInput

PAYLOADS = Path(__file__).parent / "payloads"
VERIFICATION_TOKEN = "rvaYgkR3HK8Qd9fOa7JxxNeRUSD9Z6qS"
ENCRYPT_KEY = "fs-encrypt-key-0123456789abcdef"
APP_ID = "cli_9f5343c580712544"
APP_SECRET = "fs-app-secret-0123456789abcdef"
HOOK_TOKEN = "fs-hook-token-0123456789"
HOOK_SECRET = "fs-hook-secret-0123456789"
ALICE = "15102110086"
ROOT = "om_40eb06e7b84dc71c03e009ad3c754195"
MESSAGE = "om_5ce6d572455d361153b7cb51da133945"
CHAT = "oc_5ce6d572455d361153b7xx51da133945"


def payload(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / f"feishu_{name}.json").read_bytes())
    return data


# protocols.md §3.4 written out again, so the fakes do not trust the plugin's own helpers.


def encrypt(plain: bytes, key: str = ENCRYPT_KEY) -> str:
    """What Feishu puts in `encrypt`: base64(IV + AES-256-CBC(SHA-256(key), PKCS#7(plain)))."""
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain) + padder.finalize()
    iv = os.urandom(16)
    cipher = Cipher(algorithms.AES(hashlib.sha256(key.encode()).digest()), modes.CBC(iv))
    encryptor = cipher.encryptor()
    return base64.b64encode(iv + encryptor.update(padded) + encryptor.finalize()).decode()


def lark_headers(body: bytes, *, key: str = ENCRYPT_KEY, age: float = 0.0) -> dict[str, str]:
    """The signature headers Feishu sends with `body`, as if sent `age` seconds ago."""
    timestamp, nonce = str(int(time.time() - age)), "1628049012"
    digest = hashlib.sha256((timestamp + nonce + key).encode() + body).hexdigest()
    return {
        "X-Lark-Request-Timestamp": timestamp,
        "X-Lark-Request-Nonce": nonce,
        "X-Lark-Signature": digest,
    }


def reference_webhook_sign(secret: str, timestamp: str) -> str:
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def sealed(document: dict[str, Any], *, key: str = ENCRYPT_KEY) -> bytes:
    """An event body as Feishu sends it with an Encrypt Key set."""
    return json.dumps({"encrypt": encrypt(json.dumps(document).encode(), key)}).encode()


# --- the fake Feishu open platform ---------------------------------------------------------------


def _content(body: dict[str, Any]) -> dict[str, Any]:
    """A message's text, or its card (an interactive message), from the IM API's JSON string."""
    content = json.loads(body["content"])
    if body["msg_type"] == "interactive":
        return {"card": content}
    return {"text": content["text"]}


@dataclass
class FakeFeishu:
    """Tenant tokens, message reply/create and the bot webhook, checked as Feishu does."""

    tokens: list[str] = field(default_factory=list)  # issued; only the last one is valid
    answers: list[tuple[int, Any, dict[str, str]]] = field(default_factory=list)
    posts: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0
    url: str = ""
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def token(self, request: web.Request) -> web.Response:
        body = await request.json()
        if (body.get("app_id"), body.get("app_secret")) != (APP_ID, APP_SECRET):
            return web.json_response({"code": 10014, "msg": "app secret invalid"}, status=400)
        answer = payload("tenant_token")
        answer["tenant_access_token"] = f"t-{len(self.tokens)}-caecc734c2e3328a62489fe0648c"
        self.tokens.append(answer["tenant_access_token"])
        return web.json_response(answer)

    def _authorized(self, request: web.Request) -> bool:
        given_token = request.headers.get("Authorization", "")
        return bool(self.tokens) and given_token == f"Bearer {self.tokens[-1]}"

    async def reply(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response(payload("token_invalid"), status=400)
        body = await request.json()
        return self._record(
            {
                "kind": "reply",
                "to": request.match_info["message_id"],
                "msg_type": body["msg_type"],
                **_content(body),
                "reply_in_thread": body.get("reply_in_thread"),
            }
        )

    async def create(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response(payload("token_invalid"), status=400)
        body = await request.json()
        return self._record(
            {
                "kind": "create",
                "receive_id_type": request.query.get("receive_id_type"),
                "to": body["receive_id"],
                "msg_type": body["msg_type"],
                **_content(body),
            }
        )

    async def hook(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != HOOK_TOKEN:
            return web.json_response({"code": 19001, "msg": "param invalid: incoming webhook"})
        body = await request.json()
        timestamp = str(body.get("timestamp", ""))
        fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) <= 3600
        if not fresh or not hmac.compare_digest(
            str(body.get("sign", "")), reference_webhook_sign(HOOK_SECRET, timestamp)
        ):
            self.refused += 1
            return web.json_response(payload("webhook_sign_fail"))
        self._record(
            {"kind": "hook", "msg_type": body["msg_type"], "text": body["content"]["text"]}
        )
        return web.json_response(payload("webhook_ok"))

    def _record(self, post: dict[str, Any]) -> web.Response:
        self.posts.append(post)
        self.changed.set()
        if self.answers:
            status, body, headers = self.answers.pop(0)
            return web.json_response(body, status=status, headers=headers)
        answer = payload("reply_ok")
        answer["data"]["message_id"] = f"om_sent_{len(self.posts)}"
        return web.json_response(answer)

    async def until(self, count: int) -> list[dict[str, Any]]:
        """Wait (bounded) until `count` posts arrived."""
        async with asyncio.timeout(10):
            while len(self.posts) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.posts


@pytest.fixture
async def fake(aiohttp_server: AiohttpServer) -> FakeFeishu:
    fake = FakeFeishu()
    app = web.Application()
    app.router.add_post("/open-apis/auth/v3/tenant_access_token/internal", fake.token)
    app.router.add_post("/open-apis/im/v1/messages/{message_id}/reply", fake.reply)
    app.router.add_post("/open-apis/im/v1/messages", fake.create)
    app.router.add_post("/open-apis/bot/v2/hook/{token}", fake.hook)
    server = await aiohttp_server(app)
    fake.url = str(server.make_url("")).rstrip("/")
    return fake


# --- the input -------------------------------------------------------------------------------

Client = TestClient[web.Request, web.Application]
Serve = Callable[..., Awaitable[Client]]


@pytest.fixture
def serve(serve_input: ServeInput) -> Serve:
    """A feishu input mounted at /hooks/fs in a real aiohttp app, submitting to `recorder`."""

    async def start(**config: Any) -> Client:
        config = {
            "verification_token": VERIFICATION_TOKEN,
            "encrypt_key": ENCRYPT_KEY,
            "reply_output": "fs-out",
            **config,
        }
        return await serve_input(FeishuInput, "fs", config)

    return start


async def post(client: Client, body: bytes, headers: dict[str, str] | None) -> tuple[int, Any]:
    sent = {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
    async with client.post("/hooks/fs", data=body, headers=sent) as response:
        return response.status, await response.json()


async def signed_post(client: Client, document: dict[str, Any]) -> tuple[int, Any]:
    body = sealed(document)
    return await post(client, body, lark_headers(body))


def message(text: str = "@_user_1 sms alice 你好 disk is full", **changes: Any) -> dict[str, Any]:
    """The documented im.message.receive_v1 event with its text and message fields changed."""
    document = copy.deepcopy(payload("message_receive"))
    document["event"]["message"]["content"] = json.dumps({"text": text})
    document["event"]["message"].update(changes)
    return document


async def test_url_verification_is_answered(serve: Serve) -> None:
    """The (encrypted, unsigned) handshake gets its challenge back; a wrong token gets 401."""
    client = await serve()
    assert await post(client, sealed(payload("url_verification")), None) == (
        200,
        {"challenge": "ajls384kdjx98XX"},
    )
    body = sealed(payload("url_verification"))
    assert (await post(client, body, lark_headers(body)))[0] == 200  # signed is fine too
    wrong = {**payload("url_verification"), "token": "another-token"}
    assert (await post(client, sealed(wrong), None))[0] == 401


async def test_signed_command_in_a_thread_becomes_an_event(
    serve: Serve, recorder: RecordingSubmit
) -> None:
    """A signed `sms ...` message answers in its thread's root, named by the sender's ids."""
    client = await serve(app_id=APP_ID)
    assert await signed_post(client, message()) == (
        200,
        {"accepted": 1, "duplicate": False, "rejected": []},
    )
    (event,) = recorder.events
    assert (event.kind, event.source, event.text) == (
        EventKind.COMMAND,
        "fs",
        "alice 你好 disk is full",
    )
    assert event.labels == {
        "platform": "feishu",
        "user": "ou_84aad35d084aa403a838cf73ee18467",
        "user_name": "e33ggbyz",
        "channel": CHAT,
    }
    assert event.conversation is not None
    assert event.conversation.to_json() == {"output": "fs-out", "channel": CHAT, "thread": ROOT}
    assert event.data["header"]["event_id"] == "5e3702a84e847582be8db7fb73283c02"
    assert VERIFICATION_TOKEN not in json.dumps(event.data)


async def test_command_outside_a_thread_answers_to_the_message(
    serve: Serve, recorder: RecordingSubmit
) -> None:
    """Without a root_id the command message itself is the thread to reply to."""
    client = await serve()
    await signed_post(client, message(root_id="", parent_id=""))
    assert recorder.events[0].conversation is not None
    assert recorder.events[0].conversation.thread == MESSAGE


async def test_mentions_after_the_keyword_become_names(
    serve: Serve, recorder: RecordingSubmit
) -> None:
    """@_user_N placeholders in the command's text are put back as @name."""
    client = await serve()
    mentions = [
        {"key": "@_user_1", "name": "SMS bridge"},
        {"key": "@_user_2", "name": "Bob"},
        {"key": "@_user_12", "name": "Carol"},
    ]
    await signed_post(
        client, message("@_user_1 sms alice ask @_user_2 and @_user_12", mentions=mentions)
    )
    assert recorder.events[0].text == "alice ask @Bob and @Carol"


async def test_redelivered_event_has_the_same_dedupe_key(
    serve: Serve, recorder: RecordingSubmit
) -> None:
    """Feishu's retries (same event_id, new signature) carry one dedupe key for the core."""
    client = await serve()
    await signed_post(client, message())
    await signed_post(client, message())
    assert recorder.calls[0][1] == recorder.calls[1][1]
    assert recorder.calls[0][2] >= 6 * 3600  # outlasts Feishu's redelivery schedule


def _forged(body: bytes) -> dict[str, str]:
    headers = lark_headers(body)
    headers["X-Lark-Signature"] = lark_headers(body + b" ")["X-Lark-Signature"]
    return headers


@pytest.mark.parametrize(
    ("make_request", "reason"),
    [
        (lambda b: (b, _forged(b)), "bad_signature"),
        (lambda b: (b, lark_headers(b, key="another-key")), "bad_signature"),
        (lambda b: (b, None), "unsigned"),
        (lambda b: (b, {**lark_headers(b), "X-Lark-Signature": ""}), "missing"),
        (lambda b: (b, lark_headers(b, age=330)), "stale_timestamp"),
        (lambda b: (b, lark_headers(b, age=-330)), "stale_timestamp"),
        (
            lambda b: (b, {**lark_headers(b), "X-Lark-Request-Timestamp": "soon"}),
            "malformed_timestamp",
        ),
        (
            lambda b: (b, {**lark_headers(b), "X-Lark-Request-Timestamp": "9" * 5000}),
            "malformed_timestamp",
        ),
    ],
    ids=[
        "forged",
        "other-key",
        "unsigned",
        "no-signature",
        "replayed",
        "future",
        "malformed",
        "huge",
    ],
)
async def test_bad_authentication_is_401_and_nothing_is_submitted(
    serve: Serve,
    recorder: RecordingSubmit,
    make_request: Callable[[bytes], tuple[bytes, dict[str, str] | None]],
    reason: str,
) -> None:
    """Forged, unsigned and replayed events are 401 with an auth_failed log line."""
    client = await serve()
    body, headers = make_request(sealed(message()))
    with capture_logs() as logs:
        status, answer = await post(client, body, headers)
    assert status == 401
    assert "error" in answer
    assert recorder.calls == []
    assert [log["reason"] for log in logs if log["event"] == "auth_failed"] == [reason]
    assert ENCRYPT_KEY not in repr(logs) + json.dumps(answer)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (json.dumps(message()).encode(), "not_encrypted"),
        (sealed(message(), key="another-key"), "undecryptable"),
        (json.dumps({"encrypt": "bm90IGJsb2Nrcw=="}).encode(), "undecryptable"),
        (sealed({**message(), "header": {**message()["header"], "token": "x"}}), "bad_token"),
    ],
    ids=["plaintext", "other-key", "not-blocks", "wrong-token"],
)
async def test_signed_but_wrong_bodies_are_401(
    serve: Serve, recorder: RecordingSubmit, body: bytes, reason: str
) -> None:
    """A plaintext body, one for another Encrypt Key, or a wrong Verification Token is 401."""
    client = await serve()
    with capture_logs() as logs:
        status, _ = await post(client, body, lark_headers(body))
    assert status == 401
    assert [log["reason"] for log in logs if log["event"] == "auth_failed"] == [reason]
    assert recorder.calls == []


async def test_another_keys_body_that_happens_to_unpad_is_still_401(
    serve: Serve, recorder: RecordingSubmit
) -> None:
    """One body in 256 sealed with another key unpads cleanly and decrypts to noise: it is the
    same authentication failure, never a 400 (this made the case above fail now and then)."""
    while True:
        body = sealed(message(), key="another-key")
        try:
            decrypt(ENCRYPT_KEY, json.loads(body)["encrypt"])
        except DecryptError:
            continue
        break
    client = await serve()
    with capture_logs() as logs:
        status, _ = await post(client, body, lark_headers(body))
    assert status == 401
    assert [log["reason"] for log in logs if log["event"] == "auth_failed"] == ["undecryptable"]
    assert recorder.calls == []


def _from_bot() -> dict[str, Any]:
    document = message()
    document["event"]["sender"]["sender_type"] = "app"
    return document


@pytest.mark.parametrize(
    ("document", "config"),
    [
        (message("@_user_1 hello there"), {}),
        (message("@_user_1 smsalice"), {}),
        (message(message_type="image", content='{"image_key":"img_x"}'), {}),
        (_from_bot(), {}),
        ({**message(), "header": {**message()["header"], "event_type": "im.chat.updated_v1"}}, {}),
        (message(), {"app_id": "cli_another_app"}),
    ],
    ids=["chatter", "not-the-keyword", "image", "bot", "other-event", "other-app"],
)
async def test_other_events_are_acknowledged_and_ignored(
    serve: Serve, recorder: RecordingSubmit, document: dict[str, Any], config: dict[str, Any]
) -> None:
    """Non-commands, other message types and events, and bots' own messages are 200, ignored."""
    client = await serve(**config)
    assert await signed_post(client, document) == (
        200,
        {"accepted": 0, "duplicate": False, "rejected": []},
    )
    assert recorder.calls == []


async def test_store_unavailable_is_503(serve: Serve, recorder: RecordingSubmit) -> None:
    """When the command cannot be stored the input answers 503, so Feishu delivers it again."""
    recorder.fail = True
    client = await serve()
    status, body = await signed_post(client, message())
    assert status == 503
    assert "stored" in body["error"]


async def test_malformed_event_is_422(serve: Serve) -> None:
    """A signed, decrypted event without a message_id is a 422 naming the field."""
    client = await serve()
    document = message()
    del document["event"]["message"]["message_id"]
    status, body = await signed_post(client, document)
    assert (status, body["error"]) == (422, "event: message.message_id: required")


@given(key=st.text(min_size=1, max_size=40), plain=st.binary(max_size=300))
def test_decrypt_reverses_feishus_encryption(key: str, plain: bytes) -> None:
    """decrypt() recovers what Feishu's scheme encrypted, and refuses it under another key."""
    data = encrypt(plain, key)
    assert decrypt(key, data) == plain
    try:
        other = decrypt(key + "x", data)
    except DecryptError:
        return
    assert other != plain  # a wrong key may pad correctly by chance, but never yields the text


@given(
    body=st.binary(min_size=1, max_size=200),
    nonce=st.text(alphabet="0123456789abcdef", min_size=1, max_size=16),
    data=st.data(),
)
def test_signature_verifies_what_it_signs_and_nothing_else(
    body: bytes, nonce: str, data: st.DataObject
) -> None:
    """check_event() accepts Feishu's signature and refuses a changed byte, nonce or time."""
    now = 1_700_000_000.0
    timestamp = str(int(now))
    digest = hashlib.sha256((timestamp + nonce + ENCRYPT_KEY).encode() + body).hexdigest()
    assert check_event(ENCRYPT_KEY, timestamp, nonce, digest, body, window=300, now=now) == ""
    index = data.draw(st.integers(0, len(body) - 1))
    changed = body[:index] + bytes([body[index] ^ 1]) + body[index + 1 :]
    for args in (
        (timestamp, nonce, digest, changed),
        (timestamp, nonce + "0", digest, body),
        (str(int(now) + 1), nonce, digest, body),
    ):
        assert check_event(ENCRYPT_KEY, *args, window=300, now=now) == "bad_signature"
    assert check_event(ENCRYPT_KEY, timestamp, nonce, digest, body, window=300, now=now + 301) == (
        "stale_timestamp"
    )


@given(st.text(max_size=300))
def test_command_parser_never_raises(text: str) -> None:
    """Any text is a command (what follows `sms`) or not one, and never an exception."""
    result = command_text(text)
    assert result is None or result == result.strip()
    assert command_text(f"@_user_1 sms {text.strip()}") == text.strip()


# --- the output ------------------------------------------------------------------------------

Make = Callable[..., FeishuOutput]


@pytest.fixture
def make(fake: FakeFeishu, http_session: aiohttp.ClientSession) -> Make:
    def build(**config: Any) -> FeishuOutput:
        config = {"api_url": fake.url, "rate_limit": 1000, **config}
        if "webhook_token" not in config:
            config.setdefault("app_id", APP_ID)
            config.setdefault("app_secret", APP_SECRET)
        ctx = PluginContext(name="fs-out", http=http_session, log=structlog.get_logger())
        return FeishuOutput(FeishuOutputConfig.model_validate(config), ctx)

    return build


def job(text: str = "SMS #1 to alice", thread: str = ROOT, channel: str = CHAT) -> Job:
    return Job(id=1, recipient=channel, text=text, payload={"thread": thread})


async def test_reply_goes_into_the_thread(fake: FakeFeishu, make: Make) -> None:
    """A job with a thread is a reply in that thread; the tenant token is fetched once."""
    output = make()
    outcomes = await output.deliver([job(), job("second")])
    assert [(o.kind, o.ref) for o in outcomes] == [
        (OutcomeKind.SENT, "om_sent_1"),
        (OutcomeKind.SENT, "om_sent_2"),
    ]
    assert fake.posts[0] == {
        "kind": "reply",
        "to": ROOT,
        "msg_type": "text",
        "text": "SMS #1 to alice",
        "reply_in_thread": True,
    }
    assert len(fake.tokens) == 1


async def test_channel_without_thread_creates_a_message(fake: FakeFeishu, make: Make) -> None:
    """No thread but a chat id: a new message in that chat; reply_in_thread: false is kept."""
    await make().deliver([job(thread="")])
    await make(reply_in_thread=False).deliver([job()])
    assert [(p["kind"], p["to"]) for p in fake.posts] == [("create", CHAT), ("reply", ROOT)]
    assert fake.posts[0]["receive_id_type"] == "chat_id"
    assert fake.posts[1]["reply_in_thread"] is False


async def test_refused_token_is_renewed_once(fake: FakeFeishu, make: Make) -> None:
    """A token Feishu stops accepting is replaced, and the post goes through."""
    output = make()
    await output.deliver([job()])
    fake.tokens.append("t-issued-elsewhere")  # the cached token is no longer the valid one
    (outcome,) = await output.deliver([job()])
    assert outcome.kind is OutcomeKind.SENT
    assert len(fake.tokens) == 3


async def test_webhook_posts_are_signed(fake: FakeFeishu, make: Make) -> None:
    """With only a bot webhook, posts go to it with timestamp and sign in the body."""
    (outcome,) = await make(webhook_token=HOOK_TOKEN, webhook_secret=HOOK_SECRET).deliver([job()])
    assert (outcome.kind, outcome.ref) == (OutcomeKind.SENT, "")
    assert fake.posts == [{"kind": "hook", "msg_type": "text", "text": "SMS #1 to alice"}]
    assert fake.refused == 0


async def test_webhook_with_a_wrong_secret_fails(fake: FakeFeishu, make: Make) -> None:
    """The fake's check is real: a wrong webhook secret gets 19021, which fails the job."""
    output = make(webhook_token=HOOK_TOKEN, webhook_secret="another-hook-secret")
    (outcome,) = await output.deliver([job()])
    assert (outcome.kind, outcome.code, fake.refused) == (OutcomeKind.FAILED, "19021", 1)
    assert "check webhook_secret" in outcome.reason


async def test_long_text_is_split_into_numbered_parts(fake: FakeFeishu, make: Make) -> None:
    """Past 4000 characters a text goes out as numbered replies in the same thread."""
    text = ("磁盘已满 disk full " * 300).strip()
    (outcome,) = await make().deliver([job(text)])
    assert (outcome.kind, outcome.ref) == (OutcomeKind.SENT, "om_sent_1,om_sent_2")
    assert [p["text"][-6:] for p in fake.posts] == [" (1/2)", " (2/2)"]
    assert all(len(p["text"]) <= 4000 and p["to"] == ROOT for p in fake.posts)


async def test_long_text_is_truncated_when_splitting_is_off(fake: FakeFeishu, make: Make) -> None:
    """With split_long: false one reply goes out, cut, saying how much was left out."""
    await make(split_long=False).deliver([job("x" * 5000)])
    (post,) = fake.posts
    assert len(post["text"]) == 4000
    assert "truncated" in post["text"]


@pytest.mark.parametrize(
    ("status", "answer", "headers", "kind", "code", "after"),
    [
        (
            429,
            payload("rate_limited"),
            {"x-ogw-ratelimit-reset": "3"},
            OutcomeKind.RETRY,
            "99991400",
            3.0,
        ),
        (429, {}, {"Retry-After": "9"}, OutcomeKind.RETRY, "429", 9.0),
        (200, {"code": 11232, "msg": "frequency limited"}, {}, OutcomeKind.RETRY, "11232", None),
        (500, {"code": 1500, "msg": "internal error"}, {}, OutcomeKind.RETRY, "1500", None),
        (400, payload("bot_not_in_chat"), {}, OutcomeKind.FAILED, "230002", None),
        (
            400,
            {"code": 230001, "msg": "invalid receive_id"},
            {},
            OutcomeKind.FAILED,
            "230001",
            None,
        ),
    ],
    ids=["rate-limit", "429", "webhook-limit", "server", "not-in-chat", "bad-param"],
)
async def test_refusals_are_classified(
    fake: FakeFeishu,
    make: Make,
    status: int,
    answer: dict[str, Any],
    headers: dict[str, str],
    kind: OutcomeKind,
    code: str,
    after: float | None,
) -> None:
    """`code != 0` is retried for rate limits and server trouble, failed for the rest."""
    fake.answers.append((status, answer, headers))
    (outcome,) = await make().deliver([job()])
    assert (outcome.kind, outcome.code, outcome.retry_after) == (kind, code, after)


async def test_non_json_answers(fake: FakeFeishu, make: Make) -> None:
    """A 200 page that is not Feishu's JSON is retried; a 502 page too."""
    fake.answers += [(200, "<html>portal</html>", {}), (502, "<html>bad gateway</html>", {})]
    outcomes = [(await make().deliver([job()]))[0] for _ in range(2)]
    assert [(o.kind, o.code) for o in outcomes] == [
        (OutcomeKind.RETRY, "200"),
        (OutcomeKind.RETRY, "502"),
    ]


async def test_secrets_never_in_reasons_or_logs(fake: FakeFeishu, make: Make) -> None:
    """Answers echoing the app secret or the tenant token are redacted."""
    output = make()
    await output.deliver([job()])
    echo = f"secret {APP_SECRET} token {fake.tokens[-1]}"
    fake.answers += [(400, {"code": 1, "msg": echo}, {}), (500, echo, {})]
    with capture_logs() as logs:
        outcomes = [(await output.deliver([job()]))[0] for _ in range(2)]
    reasons = " ".join(o.reason for o in outcomes)
    assert reasons.count("<redacted>") == 4
    for secret in (APP_SECRET, fake.tokens[-1]):
        assert secret not in reasons + repr(logs)


async def test_wrong_app_secret_fails(fake: FakeFeishu, make: Make) -> None:
    """A refused app secret fails the job with Feishu's code, not the secret."""
    (outcome,) = await make(app_secret="wrong-secret-000").deliver([job()])
    assert (outcome.kind, outcome.code) == (OutcomeKind.FAILED, "10014")
    assert "app_secret is wrong" in outcome.reason


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "set app_id and app_secret, or webhook_token"),
        ({"app_id": "cli_x"}, "set both app_id and app_secret"),
        ({"webhook_token": "t", "webhook_secret": ""}, "must not be empty"),
        ({"webhook_secret": "s", "app_id": "a", "app_secret": "s"}, "needs webhook_token"),
        ({"webhook_token": "t", "api_url": "ftp://x"}, "http:// or https://"),
    ],
)
def test_output_config_errors(config: dict[str, Any], message: str) -> None:
    """An output needs an app or a webhook; secrets are not empty; the API URL is http(s)."""
    with pytest.raises(ValidationError, match=message):
        FeishuOutputConfig.model_validate(config)


def test_input_needs_both_secrets() -> None:
    """The input refuses to run without the Verification Token and the Encrypt Key."""
    with pytest.raises(ValidationError, match="encrypt_key"):
        FeishuInputConfig.model_validate({"reply_output": "o", "verification_token": "t"})
    config = FeishuInputConfig.model_validate(
        {"reply_output": "o", "verification_token": "t", "encrypt_key": "k"}
    )
    assert config.replay_window.total_seconds() == 300
    assert webhook_sign("s", 1) == reference_webhook_sign("s", "1")


# --- end to end ------------------------------------------------------------------------------


async def test_end_to_end_command_sms_answer_and_reply(
    fake: FakeFeishu, smsbridge_daemon: DaemonFactory
) -> None:
    """`sms alice …` in a Feishu thread texts alice; the answer and her reply land in it."""
    daemon = await smsbridge_daemon(
        f"""
contacts:
  alice: "{ALICE}"
inputs:
  fs:
    type: feishu
    verification_token: ${{FS_TOKEN}}
    encrypt_key: ${{FS_KEY}}
    app_id: {APP_ID}
    reply_output: fs-out
    commands: {{allow_users: ["*"]}}
outputs:
  fs-out:
    type: feishu
    app_id: {APP_ID}
    app_secret: ${{FS_SECRET}}
    api_url: {fake.url}
""",
        types=[FeishuInput, FeishuOutput],
        environ={"FS_TOKEN": VERIFICATION_TOKEN, "FS_KEY": ENCRYPT_KEY, "FS_SECRET": APP_SECRET},
    )
    simulator = daemon.simulator
    assert simulator is not None
    body = sealed(message())
    headers = {"Content-Type": "application/json", **lark_headers(body)}
    async with (
        aiohttp.ClientSession() as http_session,
        http_session.post(daemon.url + "/hooks/fs", data=body, headers=headers) as response,
    ):
        assert response.status == 200
    await simulator.state.wait_for(lambda s: len(s.messages) == 1)
    (sms,) = simulator.state.messages
    assert (sms.mobile, sms.content) == (ALICE, "你好 disk is full")
    (answer,) = await fake.until(1)
    assert (answer["kind"], answer["to"], answer["reply_in_thread"]) == ("reply", ROOT, True)
    assert answer["text"].startswith("SMS #")
    simulator.state.inject_reply(ALICE, "on my way")
    await daemon.poller.poll_replies()
    await daemon.processor.drain()
    reply = (await fake.until(2))[1]
    assert (reply["kind"], reply["to"], reply["text"]) == ("reply", ROOT, "alice: on my way")
