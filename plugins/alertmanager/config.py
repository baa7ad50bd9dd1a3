"""An `alertmanager` input's config: how Alertmanager authenticates, dedupe, and size limits."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Self

from pydantic import Field, model_validator

from bridge.config import ConfigModel, Duration
from bridge.plugin import DEFAULT_MAX_BODY, BasicCredentials, BearerOrBasic, require_auth

__all__ = ["AlertmanagerAuth", "AlertmanagerConfig", "BasicCredentials"]


class AlertmanagerAuth(BearerOrBasic):
    """Exactly one of `bearer` (Alertmanager's `http_config.authorization`) or `basic`."""


class AlertmanagerConfig(ConfigModel):
    """One Alertmanager webhook receiver, at /hooks/<name>."""

    auth: AlertmanagerAuth | None = None
    allow_unauthenticated: bool = False  # true instead of auth: accept requests from anyone
    # Alertmanager's default repeat_interval: a re-notification within it does not page again.
    dedupe_window: Duration = timedelta(hours=4)
    max_body: Annotated[int, Field(gt=0)] = DEFAULT_MAX_BODY  # bytes; larger requests get 413

    @model_validator(mode="after")
    def _auth_or_opt_out(self) -> Self:
        require_auth(
            self.auth,
            self.allow_unauthenticated,
            "auth.bearer or auth.basic (and the same in Alertmanager's http_config)",
        )
        return self
