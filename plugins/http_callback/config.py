"""An `http_callback` output's config: where to POST, the signing secret, timeout, extra headers."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Self

from pydantic import Field, SecretStr, field_validator, model_validator

from bridge.config import ConfigModel, HttpUrl, PositiveDuration, SecretFile

# Headers smsbridge sets itself; letting config replace them would break or forge the signature.
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "user-agent",
        "x-smsbridge-timestamp",
        "x-smsbridge-signature",
    }
)
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")


class HttpCallbackConfig(ConfigModel):
    """One receiver of signed JSON callbacks."""

    url: HttpUrl  # the receiver's http:// or https:// URL; redirects are not followed
    secret: SecretStr | None = None  # the HMAC-SHA256 key, e.g. ${CALLBACK_SECRET}; or secret_file
    secret_file: SecretFile | None = None  # read at start, e.g. a systemd credential
    timeout: PositiveDuration = timedelta(seconds=10)  # no answer within this: the job is retried
    headers: dict[str, str] = Field(default_factory=dict)  # extra headers, e.g. {X-Team: ops}

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise ValueError("secret must not be empty")
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _TOKEN.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid header name")
            if name.lower() in RESERVED_HEADERS:
                raise ValueError(f"{name} is set by smsbridge and cannot be configured")
            if "\r" in text or "\n" in text:
                raise ValueError(f"the value of {name} must be one line")
        return value

    @model_validator(mode="after")
    def _one_secret_source(self) -> Self:
        if (self.secret is None) == (self.secret_file is None):
            raise ValueError("set exactly one of secret (e.g. ${CALLBACK_SECRET}) or secret_file")
        return self
