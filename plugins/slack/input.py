"""The `slack` input: slash commands, Events API messages and our buttons pressed in, `sms`
command Events out."""

from __future__ import annotations

import hashlib
from typing import Any, NoReturn
from urllib.parse import parse_qsl

from aiohttp import web

import bridge.plugins.slack.actions as actions
from bridge.events import Event
from bridge.plugin import (
    JSON_TYPE,
    HttpInput,
    Parsed,
    PluginContext,
    RequestRejectedError,
    command_event,
    load_json,
    parse_json,
    read_body,
    reject,
    sha256_hex,
)
from bridge.plugins.slack.config import SlackInputConfig
from bridge.plugins.slack.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, check
from bridge.plugins.slack.text import command_text, decode

FORM_TYPE = "application/x-www-form-urlencoded"
PLATFORM = "slack"
# Capabilities, not facts about the command: they stay out of the stored event.
DROPPED_FIELDS = frozenset({"token", "response_url"})
# Message subtypes a person writes; the rest are edits, joins, bots, deletions...
PERSON_SUBTYPES = frozenset({"", "thread_broadcast", "file_share"})
_REFUSALS = {
    "missing": "the request is not signed: X-Slack-Signature and X-Slack-Request-Timestamp "
    "are required",
    "bad_timestamp": "X-Slack-Request-Timestamp is not a Unix time",
    "stale": "the request's timestamp is more than 5 minutes from this server's clock",
    "bad_signature": "the signature does not match the body",
}


def _bot_ids(envelope: dict[str, Any]) -> set[str]:
    """The app's own user ids, from `authorizations` (and the older `authed_users`)."""
    ids = {
        str(entry.get("user_id", ""))
        for entry in envelope.get("authorizations") or ()
        if isinstance(entry, dict)
    }
    ids |= {str(user) for user in envelope.get("authed_users") or () if isinstance(user, str)}
    return ids - {""}


def _string(message: dict[str, Any], key: str) -> str:
    value = message.get(key)
    return value if isinstance(value, str) else ""


def _form(body: bytes) -> dict[str, str]:
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        reject(400, "the form body is not UTF-8 URL-encoded text")


def _user_name(message: dict[str, Any]) -> str:
    """The author's handle when Slack included a profile (it often does not)."""
    profile = message.get("user_profile")
    name = profile.get("name") if isinstance(profile, dict) else None
    return name if isinstance(name, str) else ""


class SlackInput(HttpInput[SlackInputConfig]):
    """Receives a Slack app's requests at /hooks/<name>: set it as the slash command's and the
    Event Subscriptions' Request URL (subscribe to app_mention and/or message.channels,
    message.groups, message.im).

    Every request must carry a valid v0 signature no older than 5 minutes (401 otherwise).
    Slash commands are answered at once with a short ephemeral note; the answer comes through
    `reply_output`, in the channel (Slack has no threads for slash commands). A message is a
    command when it starts with the keyword (`sms …`), after a mention of the bot; answers go
    into its thread. Slack's retries and a message that arrives both as app_mention and as
    message are taken once.
    """

    type_name = "slack"
    config_class = SlackInputConfig

    def __init__(self, config: SlackInputConfig, ctx: PluginContext) -> None:
        super().__init__(config, ctx)
        self._secret = config.signing_secret.get_secret_value().encode()

    async def receive(self, request: web.Request) -> web.Response:
        timestamp = request.headers.get(TIMESTAMP_HEADER, "").strip()
        signature = request.headers.get(SIGNATURE_HEADER, "").strip()
        if not timestamp or not signature:
            self._refuse(request, "missing")  # before reading a body nobody signed
        body = await read_body(request, self.config.max_body)
        reason = check(self._secret, timestamp, signature, body)
        if reason:
            self._refuse(request, reason)
        if request.content_type == FORM_TYPE:
            return await self._slash_command(body)
        if request.content_type != JSON_TYPE:
            reject(415, f"expected {FORM_TYPE} (slash command) or {JSON_TYPE} (Events API)")
        return await self._event(body, parse_json(body))

    def _refuse(self, request: web.Request, reason: str) -> NoReturn:
        self.log.warning("auth_failed", reason=reason, remote=request.remote)
        reject(401, _REFUSALS[reason])

    async def _slash_command(self, body: bytes) -> web.Response:
        form = _form(body)
        if form.get("ssl_check") == "1":
            return web.Response()  # Slack checking our certificate: nothing to do
        if "payload" in form:
            return await self._interaction(body, form["payload"])
        missing = [key for key in ("user_id", "channel_id", "command") if not form.get(key)]
        if missing:
            reject(400, f"the slash command lacks {', '.join(missing)}")
        # trigger_id is unique per invocation: a request replayed within the window is one.
        key = form.get("trigger_id") or hashlib.sha256(body).hexdigest()
        stored = await self.accept(
            body,
            Parsed([self._slash_event(form)]),
            dedupe_key=sha256_hex(PLATFORM, self.ctx.name, "command", key),
            dedupe_window=self.config.dedupe_window.total_seconds(),
        )
        if stored.status != 200:
            return stored
        shown = f"{form['command']} {decode(form.get('text', '')).strip()}".strip()
        return web.json_response(
            {"response_type": "ephemeral", "text": f"Working on `{shown}`; the answer follows."}
        )

    async def _interaction(self, body: bytes, raw: str) -> web.Response:
        """A button pressed (Interactivity): ours runs its command like `sms ack 3` typed in
        the message's thread. Slack wants a 200 within 3 s and shows nothing of its body."""
        button = actions.pressed(parse_json(raw.encode()))
        if isinstance(button, str):
            self.log.info("slack_interaction_ignored", reason=button)
            return web.Response()
        # trigger_id is unique per press: Slack's retries of one press are one command.
        key = button.trigger_id or hashlib.sha256(body).hexdigest()
        stored = await self.accept(
            body,
            Parsed([self._button_event(button)]),
            dedupe_key=sha256_hex(PLATFORM, self.ctx.name, "action", key),
            dedupe_window=self.config.dedupe_window.total_seconds(),
        )
        return stored if stored.status != 200 else web.Response()

    def _button_event(self, button: actions.Pressed) -> Event:
        return command_event(
            source=self.ctx.name,
            platform=PLATFORM,
            text=button.command,
            user_id=button.user_id,
            user_name=button.user_name,
            reply_output=self.config.reply_output,
            channel=button.channel,
            thread=button.thread,
            data={"interaction": "block_actions", "command": button.command},
        )

    def _slash_event(self, form: dict[str, str]) -> Event:
        return command_event(
            source=self.ctx.name,
            platform=PLATFORM,
            text=decode(form.get("text", "")).strip(),
            user_id=form["user_id"],
            user_name=form.get("user_name", ""),
            reply_output=self.config.reply_output,
            channel=form["channel_id"],
            thread="",  # slash commands are not part of a thread; answers go to the channel
            data={key: value for key, value in form.items() if key not in DROPPED_FIELDS},
        )

    def parse(self, body: bytes) -> Parsed:
        """A stored slash command (a form) or Events API message (JSON) as its command event."""
        if body.lstrip().startswith(b"{"):
            event = self._command(load_json(body))
            return Parsed([] if isinstance(event, str) else [event])
        try:
            form = _form(body)
            if "payload" in form:
                button = actions.pressed(load_json(form["payload"].encode()))
                return Parsed([] if isinstance(button, str) else [self._button_event(button)])
            return Parsed([self._slash_event(form)])
        except (KeyError, RequestRejectedError) as exc:
            raise ValueError(f"not a slash command: {exc}") from None

    async def _event(self, body: bytes, envelope: Any) -> web.Response:
        if not isinstance(envelope, dict):
            reject(400, "the body: expected an object")
        kind = envelope.get("type")
        if kind == "url_verification":
            challenge = envelope.get("challenge")
            if not isinstance(challenge, str):
                reject(400, "challenge: expected a string")
            return web.json_response({"challenge": challenge})
        if kind != "event_callback":
            self.log.info("slack_request_ignored", type=str(kind)[:60])
            return web.Response()
        event = self._command(envelope)
        if isinstance(event, str):
            self.log.debug("slack_message_ignored", reason=event)
            return web.Response()
        conversation = event.conversation
        assert conversation is not None  # command_event always sets it
        # The message, not the delivery: retries and app_mention + message copies are one.
        message = envelope["event"]
        return await self.accept(
            body,
            Parsed([event]),
            dedupe_key=sha256_hex(
                PLATFORM,
                self.ctx.name,
                "message",
                envelope.get("team_id", ""),
                conversation.channel,
                message.get("ts", ""),
            ),
            dedupe_window=self.config.dedupe_window.total_seconds(),
        )

    def _command(self, envelope: Any) -> Event | str:
        """The command Event in an event_callback, or why it holds none."""
        if not isinstance(envelope, dict):
            return "not an object"
        message = envelope.get("event")
        if not isinstance(message, dict) or message.get("type") not in ("app_mention", "message"):
            return "not a message"
        bots = _bot_ids(envelope)
        user = _string(message, "user")
        # Our own posts (and other bots') must never run commands: no loops.
        if message.get("bot_id") or message.get("bot_profile") or user in bots:
            return "from a bot"
        if str(message.get("subtype") or "") not in PERSON_SUBTYPES:
            return "not a person's new message"
        channel, ts = _string(message, "channel"), _string(message, "ts")
        if not (user and channel and ts):
            return "lacks user, channel or ts"
        found = command_text(
            _string(message, "text"),
            self.config.keyword,
            bots=bots,
            any_mention=message["type"] == "app_mention",
        )
        if found is None:
            return "not a command"
        data = {key: value for key, value in envelope.items() if key not in DROPPED_FIELDS}
        return command_event(
            source=self.ctx.name,
            platform=PLATFORM,
            text=found,
            user_id=user,
            user_name=_user_name(message) or user,
            reply_output=self.config.reply_output,
            channel=channel,
            thread=_string(message, "thread_ts") or ts,
            data=data,
        )
