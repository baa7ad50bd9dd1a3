"""The `telegram` input: a bot's webhook updates in, `sms` commands out as command Events."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bridge.events import Event
from bridge.plugin import (
    HttpInput,
    Parsed,
    check_content_type,
    command_event,
    load_json,
    parse_json,
    read_body,
    reject,
    secret_equal,
    sha256_hex,
)
from bridge.plugins.telegram.config import TelegramInputConfig
from bridge.plugins.telegram.update import Command, find_command

PLATFORM = "telegram"
AUTH_HEADER = "X-Telegram-Bot-Api-Secret-Token"


class TelegramInput(HttpInput[TelegramInputConfig]):
    """Receives a bot's updates at /hooks/<name> (setWebhook with url and secret_token).

    Telegram signs nothing: every update carries the static secret_token in
    X-Telegram-Bot-Api-Secret-Token, compared in constant time; there is no timestamp to
    bound replays, so repeated deliveries are caught by update_id instead. Answers: 200 once
    the command is stored (or the update ignored); 503 when storing failed, so Telegram
    retries; 401 missing or wrong secret token; 400 / 413 / 415 / 422 for malformed bodies.
    The answer to a command is posted later through `reply_output`.
    """

    type_name = "telegram"
    config_class = TelegramInputConfig

    async def receive(self, request: web.Request) -> web.Response:
        # Authenticated before the body is read: an unauthenticated caller costs nothing.
        self._authenticate(request)
        check_content_type(request)
        body = await read_body(request, self.config.max_body)
        update = parse_json(body)
        if not isinstance(update, dict):
            reject(422, "the body: expected an object (a Telegram Update)")
        update_id = update.get("update_id")
        if not isinstance(update_id, int) or isinstance(update_id, bool):
            reject(422, "update_id: expected an integer")
        event = self._event(update)
        if event is None:
            return await self.accept(body, Parsed([]))
        return await self.accept(
            body,
            Parsed([event]),
            # Telegram redelivers an update it got no 2xx for; the same update_id is one command.
            dedupe_key=sha256_hex(PLATFORM, self.ctx.name, update_id),
            dedupe_window=self.config.dedupe_window.total_seconds(),
        )

    def parse(self, body: bytes) -> Parsed:
        update = load_json(body)
        if not isinstance(update, dict):
            raise ValueError("the body: expected an object (a Telegram Update)")
        event = self._event(update)
        return Parsed([event] if event is not None else [])

    def _event(self, update: dict[str, Any]) -> Event | None:
        """The command in an update, or None (logged) when it holds none."""
        found = find_command(update, self.config.bot_username)
        if not isinstance(found, Command):
            self.log.debug("update_ignored", update_id=update.get("update_id"), reason=found)
            return None
        return command_event(
            source=self.ctx.name,
            platform=PLATFORM,
            text=found.text,
            user_id=found.user_id,
            user_name=found.user_name,
            reply_output=self.config.reply_output,
            channel=found.chat_id,
            thread=found.thread,
            data=update,
        )

    def _authenticate(self, request: web.Request) -> None:
        given = request.headers.get(AUTH_HEADER, "")
        if not given:
            self.log.warning("auth_failed", reason="missing", remote=request.remote)
            reject(
                401, f"authentication required: send the webhook's secret token in {AUTH_HEADER}"
            )
        if not secret_equal(given, self.config.secret_token):
            self.log.warning("auth_failed", reason="wrong", remote=request.remote)
            reject(401, f"the {AUTH_HEADER} header was not accepted")
