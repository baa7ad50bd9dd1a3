"""A `slack` input's and output's config: the signing secret; the bot token or a webhook URL."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from yarl import URL

from bridge.chat import ChatInputConfig, ChatOutputConfig
from bridge.config import Duration, PositiveDuration

CHAT_MAX_BODY = 256 * 1024  # protocols.md §6.6: chat payloads are small
API_URL = "https://slack.com/api"


def http_url(value: str) -> str:
    """`value` if it is an http:// or https:// URL with a host; the error never echoes it."""
    try:
        url = URL(value)
    except (TypeError, ValueError):
        raise ValueError("expected an http:// or https:// URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("expected an http:// or https:// URL")
    return value


class SlackInputConfig(ChatInputConfig):
    """One Slack app's Request URL (slash commands and the Events API), at /hooks/<name>."""

    signing_secret: SecretStr  # Basic Information → App Credentials → Signing Secret
    keyword: Annotated[str, Field(min_length=1, pattern=r"^\S+$")] = "sms"
    # Slack retries an event up to 3 times within ~6 minutes; a message is taken once.
    dedupe_window: Duration = timedelta(hours=1)
    max_body: Annotated[int, Field(gt=0)] = CHAT_MAX_BODY

    @field_validator("signing_secret")
    @classmethod
    def _secret_set(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("signing_secret must not be empty")
        return value


class SlackOutputConfig(ChatOutputConfig):
    """Posts through chat.postMessage with a bot token, or to one incoming webhook.

    `token` (xoxb-…, scope chat:write) posts to any channel the bot is in, and in threads;
    `webhook_url` posts only to the webhook's own channel, and `channel` is ignored.
    """

    token: SecretStr | None = None
    webhook_url: SecretStr | None = None  # the URL is the secret: give it as ${SLACK_WEBHOOK}
    api_url: str = API_URL
    timeout: PositiveDuration = timedelta(seconds=10)

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        return http_url(value).rstrip("/")

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
