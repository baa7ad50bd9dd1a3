"""The `feishu` input: encrypted, signed event subscriptions and card callbacks in, `sms`
commands out."""

from __future__ import annotations

import json
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
    check_content_type,
    command_event,
    load_json,
    parse_json,
    read_body,
    reject,
    secret_equal,
    sha256_hex,
    validation_message,
)
from bridge.plugin import command_text as chat_command_text
from bridge.plugins.feishu.cards import CARD_ACTION_EVENT, pressed
from bridge.plugins.feishu.config import FeishuInputConfig
from bridge.plugins.feishu.crypto import DecryptError, check_event, decrypt

PLATFORM = "feishu"
MESSAGE_EVENT = "im.message.receive_v1"
CHALLENGE = {"WWW-Authenticate": 'Lark realm="smsbridge", headers="X-Lark-Signature"'}
# Feishu redelivers an unanswered event for hours; each event_id is taken once in a day.
DEDUPE_WINDOW = 24 * 3600.0
_MESSAGES = {
    "missing": "authentication required: send Feishu's X-Lark-Signature headers",
    "malformed_timestamp": "X-Lark-Request-Timestamp is not unix seconds",
    "stale_timestamp": "the timestamp is outside the accepted window",
    "bad_signature": "the signature was not accepted",
    "not_encrypted": "expected an encrypted body: set the same Encrypt Key in Feishu",
    "undecryptable": "the body does not decrypt with the Encrypt Key",
    "bad_token": "the verification token was not accepted",
    "unsigned": "authentication required: events must carry X-Lark-Signature",
}


class _Model(BaseModel):
    # Extra keys are ignored: Feishu adds fields; the raw dict keeps them for templates.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class Header(_Model):
    event_id: str = Field(min_length=1)
    event_type: str = ""
    token: str = ""
    app_id: str = ""


class SenderId(_Model):
    open_id: str = ""
    user_id: str = ""
    union_id: str = ""


class Sender(_Model):
    sender_id: SenderId = SenderId()
    sender_type: str = ""


class Mention(_Model):
    key: str = ""
    name: str = ""


class Message(_Model):
    message_id: str = Field(min_length=1)
    root_id: str = ""
    chat_id: str = Field(min_length=1)
    message_type: str = ""
    content: str = ""
    mentions: list[Mention] = []


class MessageEvent(_Model):
    """`im.message.receive_v1` (schema 2.0): who wrote what, where, and in which thread."""

    sender: Sender
    message: Message


def command_text(text: str, mentions: list[Mention] | None = None) -> str | None:
    """What follows the `sms` keyword, or None when the text is not an `sms` command; mention
    placeholders after it are put back as @name."""
    rest = chat_command_text(text)
    if rest is None:
        return None
    # Longest first: "@_user_1" is a prefix of "@_user_10".
    for mention in sorted(mentions or [], key=lambda m: len(m.key), reverse=True):
        if mention.key:
            rest = rest.replace(mention.key, f"@{mention.name}")
    return rest.strip()


def _message_text(content: str) -> str:
    """A text message's `content` is itself JSON: {"text": "..."}."""
    try:
        document = json.loads(content)
    except ValueError:
        return ""
    text = document.get("text") if isinstance(document, dict) else None
    return text if isinstance(text, str) else ""


def _without_token(document: dict[str, Any]) -> dict[str, Any]:
    """The event for templates and the store, without the Verification Token in its header."""
    header = {k: v for k, v in document.get("header", {}).items() if k != "token"}
    return {**document, "header": header}


def _header(document: dict[str, Any]) -> Header:
    try:
        return Header.model_validate(document.get("header"))
    except ValidationError as exc:
        reject(422, f"header: {validation_message(exc)}")


class FeishuInput(HttpInput[FeishuInputConfig]):
    """Receives an app's event subscription at /hooks/<name>.

    Every body is `{"encrypt": ...}`. Events carry X-Lark-Request-Timestamp, -Nonce and
    X-Lark-Signature, checked on the raw body before anything is parsed; the url_verification
    handshake may come unsigned (Feishu's own SDK answers it before checking signatures), so it
    is answered once it decrypts with the Encrypt Key and carries the Verification Token.

    Answers: 200 `{"challenge": ...}` to the handshake; 200 with a small JSON acknowledgement for
    events (the answer comes through the reply output); 401 failed authentication;
    400/413/415/422 bad requests; 503 when the command could not be stored.
    """

    type_name = PLATFORM
    config_class = FeishuInputConfig

    def __init__(
        self,
        config: FeishuInputConfig,
        ctx: PluginContext,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(config, ctx)
        self._clock = clock

    async def receive(self, request: web.Request) -> web.Response:
        check_content_type(request)
        body = await read_body(request, self.config.max_body)
        signed = self._check_signature(request, body)
        plain, document = self._decrypted(request, parse_json(body))
        header = document.get("header")
        token = header.get("token") if isinstance(header, dict) else document.get("token")
        if not isinstance(token, str) or not secret_equal(token, self.config.verification_token):
            self._refuse(request, "bad_token")
        if document.get("type") == "url_verification":
            self.log.info("url_verification_answered")
            return web.json_response({"challenge": str(document.get("challenge", ""))})
        if not signed:
            self._refuse(request, "unsigned")
        return await self._event(plain, document)

    def _check_signature(self, request: web.Request, body: bytes) -> bool:
        """True when signed and valid, False when unsigned; a bad signature is a 401."""
        headers = [
            request.headers.get(name, "").strip()
            for name in ("X-Lark-Request-Timestamp", "X-Lark-Request-Nonce", "X-Lark-Signature")
        ]
        if not any(headers):
            return False
        timestamp, nonce, signature = headers
        reason = check_event(
            self.config.encrypt_key.get_secret_value(),
            timestamp,
            nonce,
            signature,
            body,
            window=self.config.replay_window.total_seconds(),
            now=self._clock(),
        )
        if reason:
            self._refuse(request, reason)
        return True

    def _decrypted(self, request: web.Request, envelope: Any) -> tuple[bytes, dict[str, Any]]:
        encrypted = envelope.get("encrypt") if isinstance(envelope, dict) else None
        if not isinstance(encrypted, str):
            self._refuse(request, "not_encrypted")
        try:
            plain = decrypt(self.config.encrypt_key.get_secret_value(), encrypted)
        except DecryptError:
            self._refuse(request, "undecryptable")
        try:
            document = parse_json(plain)
        except RequestRejectedError:
            # Another key's ciphertext ends in valid padding one time in 256: it decrypts to
            # noise, which is the same authentication failure as bad padding.
            self._refuse(request, "undecryptable")
        if not isinstance(document, dict):
            reject(422, "the decrypted body: expected an object")
        return plain, document

    async def _event(self, plain: bytes, document: dict[str, Any]) -> web.Response:
        """Store the decrypted event (what `parse` reads back) and answer."""
        header = _header(document)
        event = self._command(header, document)
        stored = await self.accept(
            plain,
            Parsed([event] if event is not None else []),
            dedupe_key=sha256_hex(PLATFORM, self.ctx.name, header.event_id),
            dedupe_window=DEDUPE_WINDOW,
        )
        if header.event_type != CARD_ACTION_EVENT or stored.status != 200:
            return stored
        # A card callback is answered within 3 s with what the card shows: a short toast.
        shown = f"sms {event.text}: the answer follows" if event is not None else "ignored"
        return web.json_response({"toast": {"type": "info", "content": shown}})

    def parse(self, body: bytes) -> Parsed:
        document = load_json(body)
        if not isinstance(document, dict):
            raise ValueError("the decrypted body: expected an object")
        try:
            event = self._command(_header(document), document)
        except RequestRejectedError as exc:
            raise ValueError(exc.message) from None
        return Parsed([event] if event is not None else [])

    def _command(self, header: Header, document: dict[str, Any]) -> Event | None:
        """The command event, or None (logged) for anything that is not an `sms` command."""
        if self.config.app_id and header.app_id != self.config.app_id:
            self._ignore(header, "other_app")
            return None
        if header.event_type == CARD_ACTION_EVENT:
            return self._button(header, document)
        if header.event_type != MESSAGE_EVENT:
            self._ignore(header, "not_a_message")
            return None
        try:
            event = MessageEvent.model_validate(document.get("event"))
        except ValidationError as exc:
            reject(422, f"event: {validation_message(exc)}")
        if event.sender.sender_type != "user":
            self._ignore(header, "from_a_bot")  # ours included: never answer ourselves
            return None
        message = event.message
        if message.message_type != "text":
            self._ignore(header, "not_text")
            return None
        text = command_text(_message_text(message.content), message.mentions)
        if text is None:
            self._ignore(header, "not_a_command")
            return None
        ids = event.sender.sender_id
        return command_event(
            source=self.ctx.name,
            platform=PLATFORM,
            text=text,
            # open_id is always there; user_id (the employee id) only with that permission.
            user_id=ids.open_id or ids.user_id or ids.union_id,
            user_name=ids.user_id or ids.open_id,
            reply_output=self.config.reply_output,
            channel=message.chat_id,
            # The reply API answers in the thread of the message it is given: the root's.
            thread=message.root_id or message.message_id,
            data=_without_token(document),
        )

    def _button(self, header: Header, document: dict[str, Any]) -> Event | None:
        """One of our card buttons pressed: its command, answered under the card."""
        button = pressed(document.get("event"))
        if isinstance(button, str):
            self._ignore(header, "not_our_button")
            return None
        return command_event(
            source=self.ctx.name,
            platform=PLATFORM,
            text=button.command,
            user_id=button.user_id,
            user_name=button.user_name,
            reply_output=self.config.reply_output,
            channel=button.chat,
            thread=button.message,
            data={"interaction": CARD_ACTION_EVENT, "command": button.command},
        )

    def _ignore(self, header: Header, reason: str) -> None:
        self.log.info("message_ignored", reason=reason, event_id=header.event_id)

    def _refuse(self, request: web.Request, reason: str) -> NoReturn:
        self.log.warning("auth_failed", reason=reason, remote=request.remote)
        raise RequestRejectedError(401, _MESSAGES[reason], CHALLENGE)
