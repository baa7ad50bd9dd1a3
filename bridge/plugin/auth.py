"""The Authorization header checks webhook inputs share: Bearer tokens and Basic credentials."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, NoReturn, Self

from aiohttp import web
from pydantic import Field, SecretStr, model_validator

from bridge.config import ConfigModel
from bridge.plugin.webhook import RequestRejectedError, reject, secret_equal

REALM = 'realm="smsbridge"'


def not_empty(secret: SecretStr, name: str) -> None:
    """Refuse an empty secret in a config model (an empty token would match an empty header)."""
    if not secret.get_secret_value():
        raise ValueError(f"{name} must not be empty")


class BasicCredentials(ConfigModel):
    """HTTP Basic credentials a sender is configured with."""

    username: Annotated[str, Field(min_length=1)]  # the user name the sender is configured with
    password: SecretStr  # the password that goes with username; compared in constant time

    @model_validator(mode="after")
    def _password_set(self) -> Self:
        not_empty(self.password, "password")
        return self


class BearerOrBasic(ConfigModel):
    """Exactly one of a `bearer` token or `basic` credentials (Alertmanager's two schemes)."""

    bearer: SecretStr | None = None  # an Authorization: Bearer token
    basic: BasicCredentials | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.bearer is None) == (self.basic is None):
            raise ValueError("set exactly one of bearer (e.g. ${AM_TOKEN}) or basic")
        if self.bearer is not None:
            not_empty(self.bearer, "bearer")
        return self


def require_auth(auth: object, allow_unauthenticated: bool, how: str) -> None:
    """Auth is required unless openness is asked for explicitly, and not both (for validators).

    Anyone who can reach the port could page the on-call phone, so openness must be a choice.
    """
    if auth is None and not allow_unauthenticated:
        raise ValueError(
            f"auth is required: set {how}, or allow_unauthenticated: true to accept anyone"
        )
    if auth is not None and allow_unauthenticated:
        raise ValueError("set auth or allow_unauthenticated: true, not both")


def challenge(request: web.Request, log: Any, scheme: str, what: str, params: str = "") -> NoReturn:
    """Answer 401 with a WWW-Authenticate challenge, logging why (never the credential)."""
    log.warning("auth_failed", reason="missing", remote=request.remote)
    header = f"{scheme} {REALM}" + (f", {params}" if params else "")
    raise RequestRejectedError(
        401, f"authentication required: {what}", {"WWW-Authenticate": header}
    )


def check_authorization(
    request: web.Request,
    log: Any,
    *,
    bearer: SecretStr | None = None,
    basic: BasicCredentials | None = None,
    what: str = "credentials",
) -> None:
    """Check the Authorization header against a bearer token or Basic credentials.

    Missing or malformed: 401 with a challenge. Wrong: 403. Comparisons are constant-time.
    """
    if bearer is None and basic is None:
        return
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    value = value.strip()
    if bearer is not None:
        if scheme.lower() != "bearer" or not value:
            challenge(request, log, "Bearer", "send an Authorization: Bearer header")
        accepted = secret_equal(value, bearer)
    else:
        assert basic is not None
        if scheme.lower() != "basic" or not value:
            challenge(request, log, "Basic", "send an Authorization: Basic header")
        username, password = _basic(request, log, value)
        # Both comparisons always run, so the timing does not tell which part was wrong.
        accepted = secret_equal(username, basic.username) & secret_equal(password, basic.password)
    if not accepted:
        log.warning("auth_failed", reason="wrong", remote=request.remote)
        reject(
            403,
            f"the {what} were not accepted"
            if what.endswith("s")
            else f"the {what} was not accepted",
        )


def _basic(request: web.Request, log: Any, value: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        challenge(request, log, "Basic", "send an Authorization: Basic header")
    username, colon, password = decoded.partition(":")
    if not colon:
        challenge(request, log, "Basic", "send an Authorization: Basic header")
    return username, password
