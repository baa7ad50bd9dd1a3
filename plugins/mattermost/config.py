"""A `mattermost` input's and output's config: integration tokens; a bot token or a webhook URL."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Self

from pydantic import Field, SecretStr, field_validator, model_validator

from bridge.config import BaseUrl, Duration, PositiveDuration
from bridge.config.types import http_url
from bridge.plugin import ChatInputConfig, ChatOutputConfig

CHAT_MAX_BODY = 256 * 1024  # protocols.md §6.6: chat payloads are small


class MattermostInputConfig(ChatInputConfig):
    """Mattermost slash commands and outgoing webhooks, at /hooks/<name>.

    `tokens` are the integrations' own tokens (each slash command and outgoing webhook has
    one); a request is taken when it carries any of them.
    """

    # The slash commands' and outgoing webhooks' tokens; a request carrying any one is taken.
    tokens: Annotated[list[SecretStr], Field(min_length=1)]
    # An outgoing webhook's post is a command when it starts with this (after the trigger word).
    keyword: Annotated[str, Field(min_length=1, pattern=r"^\S+$")] = "sms"
    # User ids or names whose posts never run commands: the bot account the output posts as.
    ignore_users: list[str] = Field(default_factory=list)
    dedupe_window: Duration = timedelta(hours=1)  # the same command or post within this runs once
    max_body: Annotated[int, Field(gt=0)] = CHAT_MAX_BODY  # bytes; larger requests get 413

    @field_validator("tokens")
    @classmethod
    def _tokens_set(cls, value: list[SecretStr]) -> list[SecretStr]:
        if any(not token.get_secret_value() for token in value):
            raise ValueError("tokens must not be empty")
        return value


class MattermostOutputConfig(ChatOutputConfig):
    """Posts through the REST API as a bot (threads), or to one incoming webhook.

    `server_url` + `token` (a bot's access token) post with `root_id` into any channel the bot
    is a member of; `channel` is a channel id. `webhook_url` posts to the webhook's own
    channel, never in a thread (incoming webhooks cannot).
    """

    server_url: BaseUrl | None = None  # the Site URL, e.g. https://chat.example.com
    token: SecretStr | None = None  # the bot's access token, with server_url; e.g. ${MM_BOT_TOKEN}
    webhook_url: SecretStr | None = None  # the URL is the secret: give it as ${MM_WEBHOOK}
    timeout: PositiveDuration = timedelta(seconds=10)  # no answer within this: the post is retried

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            http_url(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _one_way_to_post(self) -> Self:
        api = self.server_url is not None or self.token is not None
        if api == (self.webhook_url is not None):
            raise ValueError(
                "set server_url and token (e.g. ${MM_BOT_TOKEN}), or webhook_url, not both"
            )
        if api and (self.server_url is None or self.token is None):
            raise ValueError("server_url and token go together")
        if self.token is not None and not self.token.get_secret_value():
            raise ValueError("token must not be empty")
        return self
