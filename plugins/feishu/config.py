"""Feishu / Lark configs: event subscription secrets for the input; app and/or bot webhook out."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Self

from pydantic import Field, model_validator

from bridge.config import BaseUrl, PositiveDuration, Secret
from bridge.plugin import ChatInputConfig, ChatOutputConfig

API_URL = "https://open.feishu.cn"  # Lark: https://open.larksuite.com
CHAT_MAX_BODY = 256 * 1024  # protocols.md §6.6: 256 KiB is plenty for a chat event


class FeishuInputConfig(ChatInputConfig):
    """An app's event subscription (`im.message.receive_v1`) delivered to /hooks/<name>.

    Both secrets of the app's "Events and callbacks" page are required: with an Encrypt Key
    Feishu encrypts every body and signs every event, which is what makes forged and replayed
    requests refusable; the Verification Token is checked inside the decrypted body.
    """

    verification_token: Secret  # the Verification Token, checked inside each decrypted body
    encrypt_key: Secret  # the Encrypt Key: it decrypts every body and checks its signature
    app_id: str = ""  # when set, events for any other app are ignored
    # Feishu names no window (protocols.md §3.8); §6.6 advises at most 5 minutes for commands.
    replay_window: PositiveDuration = timedelta(minutes=5)
    max_body: Annotated[int, Field(gt=0)] = CHAT_MAX_BODY  # bytes; larger requests get 413


class FeishuOutputConfig(ChatOutputConfig):
    """Posts as an app (threads: reply API) and/or through a custom bot webhook (no threads).

    With `app_id`/`app_secret` an answer is a reply in the command's thread, and a post with a
    channel but no thread a new message in that chat. The webhook (`webhook_token`, the last
    part of .../open-apis/bot/v2/hook/<token>, and its signing `webhook_secret`) posts into
    its one group; it is used when there is no app, or nothing to reply to.
    """

    api_url: BaseUrl = API_URL  # Feishu's Open API; for Lark, https://open.larksuite.com
    app_id: str = ""  # the app's App ID; with app_secret, posts as the app (threads)
    app_secret: Secret | None = None  # the App Secret, e.g. ${FEISHU_APP_SECRET}; goes with app_id
    webhook_token: Secret | None = None  # the last part of the custom bot's webhook URL
    webhook_secret: Secret | None = None  # the custom bot's signing secret, if it has one
    reply_in_thread: bool = True  # false: a quoted reply in the chat rather than a thread
    timeout: PositiveDuration = timedelta(seconds=10)  # no answer within this: the post is retried

    @model_validator(mode="after")
    def _somewhere_to_post(self) -> Self:
        if bool(self.app_id) != (self.app_secret is not None):
            raise ValueError(
                "set both app_id and app_secret (e.g. ${FEISHU_APP_SECRET}), or neither"
            )
        if self.webhook_secret is not None and self.webhook_token is None:
            raise ValueError("webhook_secret needs webhook_token")
        if not self.app_id and self.webhook_token is None:
            raise ValueError("set app_id and app_secret, or webhook_token, or both")
        return self
