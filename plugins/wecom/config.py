"""WeCom configs: the group robot's key; a self-built app's callback secrets and API secret."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from yarl import URL

from bridge.config import BaseUrl, PositiveDuration, Secret
from bridge.config.types import http_url
from bridge.plugin import ChatInputConfig, ChatOutputConfig
from bridge.plugins.wecom.crypto import aes_key

DEFAULT_API_URL = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"
# The key is a UUID in practice; anything URL-safe is taken, a pasted webhook address is not.
_KEY = re.compile(r"[A-Za-z0-9_-]{8,}")


class WecomOutputConfig(ChatOutputConfig):
    """One WeCom group robot: posts text into the group the robot was added to."""

    key: SecretStr  # the key= part of the robot's webhook address; the only credential
    api_url: str = DEFAULT_API_URL  # the webhook endpoint without ?key= (or a test fake)
    timeout: PositiveDuration = timedelta(seconds=10)  # no answer within this: the post is retried
    # 20 messages a minute per robot (§3.5); faster posts wait in the outbox instead of failing.
    rate_limit: Annotated[float, Field(gt=0)] = 20 / 60

    @field_validator("key")
    @classmethod
    def _key(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value()
        if "key=" in text or "://" in text:
            raise ValueError("give only the key= value of the webhook address, not the address")
        if not _KEY.fullmatch(text):
            raise ValueError("expected the robot's key: 8 or more letters, digits, - and _")
        return value

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        if URL(http_url(value)).query_string:
            raise ValueError("expected an http:// or https:// URL without a query (the key)")
        return value


APP_API_URL = "https://qyapi.weixin.qq.com"
CALLBACK_MAX_BODY = 64 * 1024  # one encrypted text message; WeCom's text content is ≤ 2048 bytes


class WecomAppInputConfig(ChatInputConfig):
    """A self-built app's message callback (接收消息) at /hooks/<name>: `sms` commands in.

    The app's "API接收消息" page holds the URL, Token and EncodingAESKey; the corp id (我的企业 →
    企业ID) is the receive id every message must carry.
    """

    corp_id: str = Field(min_length=1)  # 企业ID: the receive id inside every message
    token: Secret  # the callback's Token: it signs every request
    encoding_aes_key: Secret  # the callback's 43-character EncodingAESKey
    agent_id: int | None = None  # when set, messages for any other app are ignored
    # WeCom names no window (protocols.md §3.8); §6.6 advises at most 5 minutes for commands.
    replay_window: PositiveDuration = timedelta(minutes=5)
    # WeCom retries an unanswered message (5 s deadline); each MsgId is taken once in a day.
    dedupe_window: PositiveDuration = timedelta(hours=24)
    max_body: Annotated[int, Field(gt=0)] = CALLBACK_MAX_BODY  # bytes; larger requests get 413

    @field_validator("encoding_aes_key")
    @classmethod
    def _encoding_aes_key(cls, value: SecretStr) -> SecretStr:
        aes_key(value.get_secret_value())  # its ValueError never repeats the key
        return value


class WecomAppOutputConfig(ChatOutputConfig):
    """A self-built app sending text messages (发送应用消息) to users: answers to commands.

    The channel is the user id (or "a|b", "@all"); WeCom apps have no threads.
    """

    corp_id: str = Field(min_length=1)  # 企业ID
    corp_secret: Secret  # the app's Secret, e.g. ${WECOM_APP_SECRET}
    agent_id: int  # the app's AgentId
    api_url: BaseUrl = APP_API_URL  # WeCom's API (or a test fake), without /cgi-bin
    timeout: PositiveDuration = timedelta(seconds=10)  # no answer within this: the post is retried
