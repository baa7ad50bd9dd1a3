"""The `dingtalk` input: an enterprise robot's signed @-message callbacks in, `sms` commands out."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NoReturn

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bridge.events import Event
from bridge.plugin import (
    HttpInput,
    Parsed,
    PluginContext,
    RequestRejectedError,
    StoreUnavailableError,
    check_content_type,
    command_event,
    command_text,
    load_json,
    parse_json,
    read_body,
    reject,
    sha256_hex,
    validation_message,
)
from bridge.plugins.dingtalk.config import DingTalkInputConfig
from bridge.plugins.dingtalk.signing import check

PLATFORM = "dingtalk"
CHALLENGE = {"WWW-Authenticate": 'DingTalk realm="smsbridge", headers="timestamp sign"'}
DEDUPE_WINDOW = 24 * 3600.0  # a redelivered msgId is taken once, however late it comes
_MESSAGES = {
    "missing": "authentication required: send DingTalk's timestamp and sign headers",
    "malformed_timestamp": "the timestamp header is not unix milliseconds",
    "stale_timestamp": "the timestamp is outside the accepted window",
    "bad_signature": "the signature was not accepted",
    "replayed": "this signature was already used for another message",
}


def thread_of(msg_id: str, staff_id: str) -> str:
    """DingTalk has no threads: the command's msgId names the conversation, and the sender's
    staff id rides along so the output can @-mention them (`DingTalkOutput` splits it)."""
    return f"{msg_id}|{staff_id}"


class _Model(BaseModel):
    # Extra keys are ignored: DingTalk adds fields; the raw dict keeps them for templates.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class _Text(_Model):
    content: str = ""


class Callback(_Model):
    """The fields of an outgoing robot callback the bridge uses (protocols.md §3.3)."""

    msgtype: str = ""
    msg_id: str = Field(alias="msgId", min_length=1)
    conversation_id: str = Field(alias="conversationId", min_length=1)
    sender_id: str = Field("", alias="senderId")
    sender_staff_id: str = Field("", alias="senderStaffId")
    sender_nick: str = Field("", alias="senderNick")
    chatbot_user_id: str = Field("", alias="chatbotUserId")
    text: _Text = _Text()


def _callback(raw: Any) -> Callback:
    if not isinstance(raw, dict):
        raise ValueError("the body: expected an object")
    try:
        return Callback.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(validation_message(exc)) from None


class DingTalkInput(HttpInput[DingTalkInputConfig]):
    """Receives an enterprise robot's callbacks at /hooks/<name>.

    DingTalk's `sign` header covers the timestamp only, not the body, so a captured pair could
    carry another body for the rest of the hour. The input therefore claims each timestamp it
    accepts, with the msgId it came with, in the replay memory (the daemon's is in the store, so
    it outlives a restart or a reload), and refuses the pair for any other message.

    Answers: 200 with a small JSON acknowledgement that DingTalk does not show (the answer comes
    through the reply output); 401 failed authentication; 400/413/415/422 bad requests; 503 when
    the command could not be stored.
    """

    type_name = PLATFORM
    config_class = DingTalkInputConfig

    def __init__(
        self,
        config: DingTalkInputConfig,
        ctx: PluginContext,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(config, ctx)
        self._clock = clock
        self._window = config.replay_window.total_seconds()

    async def receive(self, request: web.Request) -> web.Response:
        now = self._clock()
        timestamp = request.headers.get("timestamp", "").strip()
        reason = check(
            self.config.app_secret.get_secret_value(),
            timestamp,
            request.headers.get("sign", "").strip(),
            now=now,
            window=self._window,
        )
        if reason:
            self._refuse(request, reason)
        check_content_type(request)
        body = await read_body(request, self.config.max_body)
        raw = parse_json(body)
        try:
            callback = _callback(raw)
        except ValueError as exc:
            reject(422, str(exc))
        await self._claim(request, timestamp, callback.msg_id, now)
        event = self._event(callback, raw)
        return await self.accept(
            body,
            Parsed([event] if event is not None else []),
            dedupe_key=sha256_hex(PLATFORM, self.ctx.name, callback.msg_id),
            dedupe_window=DEDUPE_WINDOW,
        )

    def parse(self, body: bytes) -> Parsed:
        raw = load_json(body)
        event = self._event(_callback(raw), raw)
        return Parsed([event] if event is not None else [])

    async def _claim(self, request: web.Request, timestamp: str, msg_id: str, now: float) -> None:
        """Refuse a signature seen with another msgId; a redelivery of the same one may pass."""
        # Remembered until the timestamp leaves the window the check accepts it in: a timestamp
        # ahead of our clock stays valid for longer than one window from now.
        until = int(timestamp) / 1000 + self._window
        key = sha256_hex(PLATFORM, self.ctx.name, "sign", timestamp)
        try:
            fresh = await self.ctx.replay.claim(key, msg_id, max(until - now, 0.0))
        except StoreUnavailableError:
            self.log.warning("store_unavailable", events=1)
            reject(503, "the command could not be stored; try again later")
        if not fresh:
            self._refuse(request, "replayed")

    def _event(self, callback: Callback, raw: dict[str, Any]) -> Event | None:
        """The command event, or None (logged) for anything that is not an `sms` command."""
        if callback.chatbot_user_id and callback.chatbot_user_id in (
            callback.sender_id,
            callback.sender_staff_id,
        ):
            self._ignore(callback, "own_message")  # never answer ourselves: loops
            return None
        if callback.msgtype != "text":
            self._ignore(callback, "not_text")
            return None
        text = command_text(callback.text.content)
        if text is None:
            self._ignore(callback, "not_a_command")
            return None
        return command_event(
            source=self.ctx.name,
            platform=PLATFORM,
            text=text,
            # Staff ids are the org's stable user ids; external users only have a senderId.
            user_id=callback.sender_staff_id or callback.sender_id,
            user_name=callback.sender_nick,
            reply_output=self.config.reply_output,
            channel=callback.conversation_id,
            thread=thread_of(callback.msg_id, callback.sender_staff_id),
            # sessionWebhook can post into the group for 90 minutes: not for templates or the DB.
            data={k: v for k, v in raw.items() if k != "sessionWebhook"},
        )

    def _ignore(self, callback: Callback, reason: str) -> None:
        self.log.info("message_ignored", reason=reason, msg_id=callback.msg_id)

    def _refuse(self, request: web.Request, reason: str) -> NoReturn:
        self.log.warning("auth_failed", reason=reason, remote=request.remote)
        raise RequestRejectedError(401, _MESSAGES[reason], CHALLENGE)
