"""A `zabbix` input's config: the media type's bearer token, dedupe window and size limit."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Self

from pydantic import Field, SecretStr, model_validator

from bridge.config import ConfigModel, Duration
from bridge.plugin import not_empty, require_auth

DEFAULT_MAX_BODY = 256 * 1024  # one event per request; Zabbix messages are short


class ZabbixAuth(ConfigModel):
    """The media type's `Token` parameter, sent as `Authorization: Bearer <token>`."""

    token: SecretStr  # the media type's Token parameter, e.g. ${ZABBIX_TOKEN}

    @model_validator(mode="after")
    def _token_set(self) -> Self:
        not_empty(self.token, "token")
        return self


class ZabbixConfig(ConfigModel):
    """One Zabbix webhook media type, at /hooks/<name>."""

    auth: ZabbixAuth | None = None
    allow_unauthenticated: bool = False  # true instead of auth: accept requests from anyone
    # Zabbix retries a failed send (default 3 attempts, 10 s apart): a retry after a lost answer
    # must not page twice. Escalation steps further apart than this are new deliveries.
    dedupe_window: Duration = timedelta(minutes=10)
    max_body: Annotated[int, Field(gt=0)] = DEFAULT_MAX_BODY  # bytes; larger requests get 413

    @model_validator(mode="after")
    def _auth_or_opt_out(self) -> Self:
        require_auth(
            self.auth,
            self.allow_unauthenticated,
            "auth.token (e.g. ${ZABBIX_TOKEN}, the media type's Token parameter)",
        )
        return self
