"""A `slack` input's and output's config: the signing secret; the bot token or a webhook URL."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Self

from pydantic import Field, SecretStr, field_validator, model_validator

from bridge.config import BaseUrl, Duration, PositiveDuration, Secret
from bridge.config.types import http_url
from bridge.plugin import ChatInputConfig, ChatOutputConfig

CHAT_MAX_BODY = 256 * 1024  # protocols.md §6.6: chat payloads are small
API_URL = "https://slack.com/api"


class SlackInputConfig(ChatInputConfig):
    """One Slack app's Request URL (slash commands and the Events API), at /hooks/<name>."""

    signing_secret: Secret  # Basic Information → App Credentials → Signing Secret
    # A message (not a slash command) is a command when it starts with this, after an optional @bot.
    keyword: Annotated[str, Field(min_length=1, pattern=r"^\S+$")] = "sms"
    # Slack retries an event up to 3 times within ~6 minutes; a message is taken once.
    dedupe_window: Duration = timedelta(hours=1)
    max_body: Annotated[int, Field(gt=0)] = CHAT_MAX_BODY  # bytes; larger requests get 413


class SlackOutputConfig(ChatOutputConfig):
    """Posts through chat.postMessage with a bot token, or to one incoming webhook.

    `token` (xoxb-…, scope chat:write) posts to any channel the bot is in, and in threads;
    `webhook_url` posts only to the webhook's own channel, and `channel` is ignored.
    """

    token: SecretStr | None = None  # the bot token (xoxb-…); give it as ${SLACK_BOT_TOKEN}
    webhook_url: SecretStr | None = None  # the URL is the secret: give it as ${SLACK_WEBHOOK}
    api_url: BaseUrl = API_URL  # the Web API base (or a test fake)
    timeout: PositiveDuration = timedelta(seconds=10)  # no answer within this: the post is retried

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            http_url(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _one_way_to_post(self) -> Self:
        if (self.token is None) == (self.webhook_url is None):
            raise ValueError("set exactly one of token (e.g. ${SLACK_BOT_TOKEN}) or webhook_url")
        if self.token is not None and not self.token.get_secret_value():
            raise ValueError("token must not be empty")
        return self
