"""Telegram configs: the webhook's secret token and bot name in, the bot token and API base out."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import Field, SecretStr, field_validator

from bridge.config import BaseUrl, Duration, PositiveDuration
from bridge.plugin import ChatInputConfig, ChatOutputConfig

DEFAULT_API_URL = "https://api.telegram.org"
MAX_BODY = 256 * 1024  # protocols.md §6.6: 256 KiB is plenty for one chat update
# setWebhook's secret_token: 1-256 characters of A-Z a-z 0-9 _ - (protocols.md §3.6).
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
# Telegram usernames: 5-32 letters, digits and underscores; bots' end in "bot".
_USERNAME = re.compile(r"[A-Za-z0-9_]{5,32}")
# A bot token is "<bot id>:<35 characters>"; checked loosely so a pasted URL is caught early.
_BOT_TOKEN = re.compile(r"\d+:[A-Za-z0-9_-]+")


class TelegramInputConfig(ChatInputConfig):
    """A bot's webhook (setWebhook with secret_token) at /hooks/<name>: `sms` commands in."""

    secret_token: SecretStr  # the secret_token given to setWebhook
    # The bot's username: "/sms@OtherBot" is then left to the other bot. Unset: any "@" accepted.
    bot_username: str | None = None
    # Telegram keeps an undelivered update for up to 24 hours and retries it in that time.
    dedupe_window: Duration = timedelta(hours=24)
    max_body: Annotated[int, Field(gt=0)] = MAX_BODY  # bytes; larger requests get 413

    @field_validator("secret_token")
    @classmethod
    def _secret_token(cls, value: SecretStr) -> SecretStr:
        if not _SECRET_TOKEN.fullmatch(value.get_secret_value()):
            raise ValueError(
                "secret_token must be 1-256 characters of A-Z a-z 0-9 _ - (what setWebhook accepts)"
            )
        return value

    @field_validator("bot_username")
    @classmethod
    def _bot_username(cls, value: str | None) -> str | None:
        if value is None:
            return None
        name = value.removeprefix("@")
        if not _USERNAME.fullmatch(name):
            raise ValueError("expected the bot's username, e.g. smsbridge_bot")
        return name


class TelegramOutputConfig(ChatOutputConfig):
    """A bot posting with sendMessage: answers reply to the command's message."""

    token: SecretStr  # the bot token from @BotFather; it travels in the URL path
    api_url: BaseUrl = DEFAULT_API_URL  # a Bot API server (or a test fake)
    timeout: PositiveDuration = timedelta(seconds=10)  # no answer within this: the post is retried

    @field_validator("token")
    @classmethod
    def _token(cls, value: SecretStr) -> SecretStr:
        if not _BOT_TOKEN.fullmatch(value.get_secret_value()):
            raise ValueError("token must be a bot token as @BotFather gives it: <bot id>:<secret>")
        return value
