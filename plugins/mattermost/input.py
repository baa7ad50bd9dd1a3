"""The `mattermost` input: slash commands and outgoing webhooks in, `sms` command Events out."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, NoReturn
from urllib.parse import parse_qsl

from aiohttp import web

from bridge.events import Event
from bridge.plugin import (
    JSON_TYPE,
    HttpInput,
    Parsed,
    command_event,
    load_json,
    parse_json,
    read_body,
    reject,
    secret_equal,
    sha256_hex,
)
from bridge.plugins.mattermost.config import MattermostInputConfig

FORM_TYPE = "application/x-www-form-urlencoded"
PLATFORM = "mattermost"
# Capabilities, not facts about the command: they stay out of the stored event.
DROPPED_FIELDS = frozenset({"token", "response_url"})


def strip_word(text: str, word: str) -> str | None:
    """`text` after a leading `word` and the spaces after it; None if it does not start so.

    Case counts, as in Mattermost's own trigger words: the bridge's answers start "SMS #12 …",
    and a channel-wide outgoing webhook must not read them back as commands.
    """
    text = text.lstrip()
    if not word or not text.startswith(word):
        return None
    rest = text[len(word) :]
    if rest and not rest[0].isspace():
        return None  # "smsbot …" or "sms-team" is not the sms command
    return rest.strip()


def command_text(text: str, keyword: str, trigger_word: str = "") -> str | None:
    """What follows the keyword in an outgoing webhook's post; None when it is no command.

    A trigger word other than the keyword (e.g. `@smsbot`) may come first: `@smsbot sms …`.
    """
    if trigger_word and trigger_word != keyword:
        after = strip_word(text, trigger_word)
        text = text if after is None else after
    return strip_word(text, keyword)


def _field(fields: Mapping[str, Any], key: str) -> str:
    value = fields.get(key)
    return value if isinstance(value, str) else ""


class MattermostInput(HttpInput[MattermostInputConfig]):
    """Receives Mattermost integrations at /hooks/<name>: a custom slash command's Request URL
    (POST or GET) or an outgoing webhook's callback URL (form or JSON).

    The integration's token (in the body, or `Authorization: Token …` for slash commands) must
    be one of `tokens`, or the answer is 401. A slash command's text is the command (answered
    at once with an ephemeral note; the answer follows in its thread, or the channel). An
    outgoing webhook's post is a command when it starts with the keyword (after the trigger
    word); answers go into a thread on it. Mattermost shows only a 200 answer as success.
    """

    type_name = "mattermost"
    config_class = MattermostInputConfig

    def routes(self) -> list[web.RouteDef]:
        return [web.post("", self.handle), web.get("", self.handle)]

    async def receive(self, request: web.Request) -> web.Response:
        body = b""
        if request.method == "GET":
            fields: dict[str, Any] = dict(request.query)  # a slash command with method GET
        else:
            body = await read_body(request, self.config.max_body)
            fields = self._fields(request, body)
        self._authenticate(request, fields)
        if _field(fields, "command"):
            return await self._slash_command(fields, body)
        return await self._outgoing_webhook(fields)

    def _fields(self, request: web.Request, body: bytes) -> dict[str, Any]:
        if request.content_type == FORM_TYPE:
            try:
                return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
            except (UnicodeDecodeError, ValueError):
                reject(400, "the form body is not UTF-8 URL-encoded text")
        if request.content_type != JSON_TYPE:
            reject(415, f"expected {FORM_TYPE} or {JSON_TYPE}")
        document = parse_json(body)
        if not isinstance(document, dict):
            reject(400, "the body: expected an object")
        return document

    def _authenticate(self, request: web.Request, fields: Mapping[str, Any]) -> None:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        given = value.strip() if scheme.lower() == "token" else _field(fields, "token")
        if not given:
            self._refuse(request, "missing", "the integration's token is missing")
        # Every token is compared, so the time taken does not tell which one nearly matched.
        accepted = False
        for token in self.config.tokens:
            accepted |= secret_equal(given, token)
        if not accepted:
            self._refuse(request, "wrong", "the token is not one of this input's tokens")

    def _refuse(self, request: web.Request, reason: str, message: str) -> NoReturn:
        self.log.warning("auth_failed", reason=reason, remote=request.remote)
        reject(401, message)

    def _ignored_user(self, fields: Mapping[str, Any]) -> bool:
        ignored = set(self.config.ignore_users)
        return bool({_field(fields, "user_id"), _field(fields, "user_name")} & ignored)

    async def _slash_command(self, fields: dict[str, Any], body: bytes) -> web.Response:
        if not (_field(fields, "user_id") and _field(fields, "channel_id")):
            reject(400, "the slash command lacks user_id or channel_id")
        if self._ignored_user(fields):
            return web.json_response({})
        key = _field(fields, "trigger_id") or hashlib.sha256(body).hexdigest()
        stored = await self._accept(
            fields, dedupe_key=sha256_hex(PLATFORM, self.ctx.name, "command", key)
        )
        if stored.status != 200:
            return stored
        shown = f"{_field(fields, 'command')} {_field(fields, 'text').strip()}".strip()
        return web.json_response(
            {"response_type": "ephemeral", "text": f"Working on `{shown}`; the answer follows."}
        )

    async def _outgoing_webhook(self, fields: dict[str, Any]) -> web.Response:
        post = _field(fields, "post_id")
        if not (_field(fields, "user_id") and _field(fields, "channel_id") and post):
            reject(400, "the outgoing webhook lacks user_id, channel_id or post_id")
        # Our own posts trigger outgoing webhooks too: they must never run commands.
        if self._ignored_user(fields):
            self.log.debug("mattermost_post_ignored", reason="ignored user")
            return web.json_response({})
        if self._event(fields) is None:
            self.log.debug("mattermost_post_ignored", reason="not a command")
            return web.json_response({})
        stored = await self._accept(
            fields, dedupe_key=sha256_hex(PLATFORM, self.ctx.name, "post", post)
        )
        # An empty object: Mattermost posts nothing; the answer comes through the output.
        return stored if stored.status != 200 else web.json_response({})

    async def _accept(self, fields: dict[str, Any], *, dedupe_key: str) -> web.Response:
        # The fields are what was verified (a form, a JSON body or a GET's query): kept as JSON.
        body = json.dumps(fields, ensure_ascii=False).encode()
        event = self._event(fields)
        return await self.accept(
            body,
            Parsed([event] if event is not None else []),
            dedupe_key=dedupe_key,
            dedupe_window=self.config.dedupe_window.total_seconds(),
        )

    def parse(self, body: bytes) -> Parsed:
        fields = load_json(body)
        if not isinstance(fields, dict):
            raise ValueError("the stored fields: expected an object")
        event = self._event(fields)
        return Parsed([event] if event is not None else [])

    def _event(self, fields: Mapping[str, Any]) -> Event | None:
        """The command in a slash command or an outgoing webhook's post; None when it is none."""
        data = {key: value for key, value in fields.items() if key not in DROPPED_FIELDS}
        if _field(fields, "command"):
            text: str | None = _field(fields, "text").strip()
            # Mattermost sends root_id when the command was typed in a thread (reply box).
            thread = _field(fields, "root_id")
        else:
            text = command_text(
                _field(fields, "text"), self.config.keyword, _field(fields, "trigger_word")
            )
            # The payload has no root_id: the output finds the thread's root if this is a reply.
            thread = _field(fields, "post_id")
        if text is None:
            return None
        return command_event(
            source=self.ctx.name,
            platform=PLATFORM,
            text=text,
            user_id=_field(fields, "user_id"),
            user_name=_field(fields, "user_name"),
            reply_output=self.config.reply_output,
            channel=_field(fields, "channel_id"),
            thread=thread,
            data=data,
        )
