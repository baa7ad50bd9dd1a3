"""A `wecom` output's config: the group robot's key, the API address, pacing and timeout."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from yarl import URL

from bridge.chat import ChatOutputConfig
from bridge.config import PositiveDuration
from bridge.config.types import http_url

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
