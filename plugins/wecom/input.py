"""The `wecom` input: a self-built app's encrypted message callback in, `sms` commands out."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NoReturn
from xml.etree.ElementTree import Element, ParseError

from aiohttp import web
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from bridge.events import Event
from bridge.plugin import (
    HttpInput,
    Parsed,
    PluginContext,
    RequestRejectedError,
    answer,
    command_event,
    command_text,
    read_body,
    reject,
    sha256_hex,
)
from bridge.plugins.wecom.config import WecomAppInputConfig
from bridge.plugins.wecom.crypto import CallbackError, aes_key, open_callback

PLATFORM = "wecom"
_MESSAGES = {
    "missing": "authentication required: send msg_signature, timestamp, nonce and the ciphertext",
    "malformed_timestamp": "timestamp is not unix seconds",
    "stale_timestamp": "the timestamp is outside the accepted window",
    "bad_signature": "the signature was not accepted",
    "undecryptable": "the message does not decrypt with the EncodingAESKey",
    "wrong_receiver": "the message is not for this corp",
}


def parse_xml(body: bytes, what: str) -> dict[str, str]:
    """The child elements' texts of a flat `<xml>...</xml>` document; 400 when it is not one.

    defusedxml refuses DTDs and entities: no billion laughs, no external entities.
    """
    try:
        root: Element = fromstring(body, forbid_dtd=True)
    except (ParseError, DefusedXmlException, ValueError):
        reject(400, f"{what}: expected an XML document without a DTD")
    return {child.tag: (child.text or "").strip() for child in root}


class WecomAppInput(HttpInput[WecomAppInputConfig]):
    """Receives a WeCom self-built app's messages at /hooks/<name> (接收消息, safe mode).

    GET is the URL check: the echostr is decrypted and its plaintext answered. POST carries
    `<xml><Encrypt>` and msg_signature = sha1(sorted(token, timestamp, nonce, Encrypt)) in
    the query; both are checked in constant time, the timestamp within replay_window, and the
    decrypted message must name our corp id. Text messages that are `sms` commands become
    command events answered to the user (channel = FromUserName, thread = MsgId) through
    reply_output; everything else is acknowledged and ignored. Answers: 200 with an empty body
    (WeCom then replies nothing itself); 401 failed checks; 400/413 malformed requests; 503
    when the command could not be stored, so WeCom retries.
    """

    type_name = PLATFORM
    config_class = WecomAppInputConfig

    def __init__(
        self,
        config: WecomAppInputConfig,
        ctx: PluginContext,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(config, ctx)
        self._clock = clock
        self._key = aes_key(config.encoding_aes_key.get_secret_value())

    def routes(self) -> list[web.RouteDef]:
        return [web.get("", self._handle_verify), web.post("", self.handle)]

    async def _handle_verify(self, request: web.Request) -> web.Response:
        return await answer(self.ctx, self._verify(request))

    async def _verify(self, request: web.Request) -> web.Response:
        # An unencoded "+" in the query arrives as a space; base64 never holds one.
        echostr = request.query.get("echostr", "").replace(" ", "+")
        plain = self._open(request, echostr)
        self.log.info("url_verification_answered")
        return web.Response(body=plain, content_type="text/plain")

    async def receive(self, request: web.Request) -> web.Response:
        envelope = parse_xml(await read_body(request, self.config.max_body), "the body")
        plain = self._open(request, envelope.get("Encrypt", ""))
        message = parse_xml(plain, "the message")
        msg_id = message.get("MsgId", "")
        event = self._event(message)
        if event is None:
            return web.Response()
        stored = await self.accept(
            plain,
            Parsed([event]),
            # WeCom retries a message it got no answer for in 5 s; one MsgId is one command.
            dedupe_key=sha256_hex(PLATFORM, self.ctx.name, msg_id),
            dedupe_window=self.config.dedupe_window.total_seconds(),
        )
        # A body WeCom would try to read as a passive reply; empty means "nothing to say".
        return web.Response() if stored.status == 200 else stored

    def parse(self, body: bytes) -> Parsed:
        """The decrypted message XML, as stored, to its command event."""
        try:
            event = self._event(parse_xml(body, "the message"))
        except RequestRejectedError as exc:
            raise ValueError(exc.message) from None
        return Parsed([event] if event is not None else [])

    def _event(self, message: dict[str, str]) -> Event | None:
        msg_id = message.get("MsgId", "")
        text = self._command_text(message, msg_id)
        if text is None:
            return None
        user = message.get("FromUserName", "")
        return command_event(
            source=self.ctx.name,
            platform=PLATFORM,
            text=text,
            user_id=user,
            user_name=user,  # the user id (account) is unique; display names are not sent
            reply_output=self.config.reply_output,
            channel=user,
            thread=msg_id,
            data=message,
        )

    def _command_text(self, message: dict[str, str], msg_id: str) -> str | None:
        """What follows `sms` in a text message from a user, or None (logged) for the rest."""
        if message.get("MsgType") != "text":
            # Events (enter_agent, ...) and images, voice, ...: nothing to command.
            self._ignore(msg_id, "not_text")
            return None
        agent = self.config.agent_id
        if agent is not None and message.get("AgentID") != str(agent):
            self._ignore(msg_id, "other_app")
            return None
        if not msg_id or not message.get("FromUserName"):
            reject(400, "the message: expected MsgId and FromUserName")
        text = command_text(message.get("Content", ""))
        if text is None:
            self._ignore(msg_id, "not_a_command")
        return text

    def _open(self, request: web.Request, encrypt: str) -> bytes:
        query = request.query
        try:
            return open_callback(
                self.config.token.get_secret_value(),
                self._key,
                self.config.corp_id,
                timestamp=query.get("timestamp", "").strip(),
                nonce=query.get("nonce", ""),
                signature=query.get("msg_signature", "").strip(),
                encrypt=encrypt,
                window=self.config.replay_window.total_seconds(),
                now=self._clock(),
            )
        except CallbackError as exc:
            self._refuse(request, exc.reason)

    def _ignore(self, msg_id: str, reason: str) -> None:
        self.log.info("message_ignored", reason=reason, msg_id=msg_id[:40])

    def _refuse(self, request: web.Request, reason: str) -> NoReturn:
        self.log.warning("auth_failed", reason=reason, remote=request.remote)
        raise RequestRejectedError(401, _MESSAGES[reason])
