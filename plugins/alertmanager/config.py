"""An `alertmanager` input's config: how Alertmanager authenticates, dedupe, and size limits."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Self

from pydantic import Field, SecretStr, model_validator

from bridge.config import ConfigModel, Duration
from bridge.inbound import DEFAULT_MAX_BODY


class BasicCredentials(ConfigModel):
    """Alertmanager's `http_config.basic_auth`."""

    username: Annotated[str, Field(min_length=1)]
    password: SecretStr

    @model_validator(mode="after")
    def _password_set(self) -> Self:
        if not self.password.get_secret_value():
            raise ValueError("password must not be empty")
        return self


class AlertmanagerAuth(ConfigModel):
    """Exactly one of `bearer` (Alertmanager's `http_config.authorization`) or `basic`."""

    bearer: SecretStr | None = None
    basic: BasicCredentials | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.bearer is None) == (self.basic is None):
            raise ValueError("set exactly one of bearer (e.g. ${AM_TOKEN}) or basic")
        if self.bearer is not None and not self.bearer.get_secret_value():
            raise ValueError("bearer must not be empty")
        return self


class AlertmanagerConfig(ConfigModel):
    """One Alertmanager webhook receiver, at /hooks/<name>."""

    auth: AlertmanagerAuth | None = None
    allow_unauthenticated: bool = False
    # Alertmanager's default repeat_interval: a re-notification within it does not page again.
    dedupe_window: Duration = timedelta(hours=4)
    max_body: Annotated[int, Field(gt=0)] = DEFAULT_MAX_BODY

    @model_validator(mode="after")
    def _auth_or_opt_out(self) -> Self:
        # Anyone who can reach the port could page the on-call phone, so openness must be asked for.
        if self.auth is None and not self.allow_unauthenticated:
            raise ValueError(
                "auth is required: set auth.bearer or auth.basic (and the same in Alertmanager's "
                "http_config), or allow_unauthenticated: true to accept requests from anyone"
            )
        if self.auth is not None and self.allow_unauthenticated:
            raise ValueError("set auth or allow_unauthenticated: true, not both")
        return self
