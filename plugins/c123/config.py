"""The `gateway:` section: where the c123 gateway is, which account, and how to reach it."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Self
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, field_validator, model_validator

from bridge.config import ConfigModel, FilePath, PositiveDuration, TimeZoneName
from bridge.plugins.c123.errors import InvalidRequestError
from bridge.plugins.c123.keyfile import read_key
from bridge.plugins.c123.validation import check_account, check_key

DEFAULT_BASE_URL = "http://smsapi.c123.cn"


class SignatureConfig(ConfigModel):
    """The approved signature: its id on the wire (`csid`), its text for counting segments."""

    id: Annotated[int, Field(ge=0)] = 0
    text: str = "【smsbridge】"


class TimeoutConfig(ConfigModel):
    """How long to wait for the gateway."""

    connect: PositiveDuration = timedelta(seconds=5)
    total: PositiveDuration = timedelta(seconds=30)


def _problem(check: object, value: str) -> str:
    # The shared checks name their field; inside a model the loader already says where.
    try:
        check(value)  # type: ignore[operator]
    except InvalidRequestError as exc:
        raise ValueError(exc.problem) from None
    return value


class C123Config(ConfigModel):
    """One c123 account."""

    base_url: str = DEFAULT_BASE_URL
    account: str
    authkey: SecretStr | None = None
    authkey_file: FilePath | None = None
    channel_group: Annotated[int, Field(ge=0)] | None = None
    signature: SignatureConfig = SignatureConfig()
    timezone: TimeZoneName = ZoneInfo("Asia/Shanghai")
    timeout: TimeoutConfig = TimeoutConfig()
    segment_price: Annotated[Decimal, Field(ge=0)] = Decimal("0.10")
    # The provider publishes no rate and answers -1 when we are too fast; stay well below.
    rate_limit: Annotated[float, Field(gt=0)] | None = 10.0
    # A paused account (locked, disabled, ...) is asked for its balance this often.
    probe_interval: PositiveDuration = timedelta(minutes=1)

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("account")
    @classmethod
    def _account(cls, value: str) -> str:
        return _problem(check_account, value)

    @field_validator("authkey")
    @classmethod
    def _authkey(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _problem(check_key, value.get_secret_value())
        return value

    @field_validator("authkey_file")
    @classmethod
    def _key_in_file(cls, value: Path | None) -> Path | None:
        # What `run` would refuse at start is refused wherever the config is loaded (`check`).
        if value is not None:
            read_key(value)
        return value

    @model_validator(mode="after")
    def _one_key_source(self) -> Self:
        if (self.authkey is None) == (self.authkey_file is None):
            raise ValueError("set exactly one of authkey (e.g. ${C123_AUTHKEY}) or authkey_file")
        return self

    def load_key(self) -> SecretStr:
        """The key, read from the file when one is configured (KeyFileError if unusable)."""
        if self.authkey is not None:
            return self.authkey
        assert self.authkey_file is not None  # guaranteed by _one_key_source
        return read_key(self.authkey_file)
