"""A `webhook` input's config: authentication, the event kind, and where to find each field."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator

from bridge.config import ConfigModel, Duration
from bridge.events import EventKind
from bridge.plugin import DEFAULT_MAX_BODY

HeaderName = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")]


def check_path(value: str) -> str:
    """A dotted path such as `host.name` or `alerts.0.labels`: no empty parts."""
    if not value or any(not part for part in value.split(".")):
        raise ValueError("expected a dotted path like 'host.name'")
    return value


def _not_empty(secret: SecretStr, name: str) -> None:
    if not secret.get_secret_value():
        raise ValueError(f"{name} must not be empty")


class HmacAuth(ConfigModel):
    """The sender signs the raw body: `<prefix><hex HMAC(secret, body)>` in `header`."""

    secret: SecretStr  # the key the sender signs the body with
    header: HeaderName = "X-Signature"  # where the sender puts the signature
    algorithm: Literal["sha1", "sha256", "sha512"] = "sha256"  # the HMAC's hash function
    prefix: str | None = None  # none: "<algorithm>=", e.g. "sha256="; "" for the bare hex digest

    @model_validator(mode="after")
    def _secret_set(self) -> Self:
        _not_empty(self.secret, "secret")
        return self

    @property
    def signature_prefix(self) -> str:
        return f"{self.algorithm}=" if self.prefix is None else self.prefix


class WebhookAuth(ConfigModel):
    """Exactly one of a static `token` (in `header`) or an `hmac` signature of the body."""

    token: SecretStr | None = None  # the static token, e.g. ${HOOK_TOKEN}, sent in header
    header: HeaderName = "Authorization"  # Authorization takes "Bearer <token>"; others the token
    hmac: HmacAuth | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.token is None) == (self.hmac is None):
            raise ValueError("set exactly one of token (e.g. ${HOOK_TOKEN}) or hmac")
        if self.token is not None:
            _not_empty(self.token, "token")
        elif "header" in self.model_fields_set:
            raise ValueError("header belongs to token; put the signature's header in hmac.header")
        return self


class FieldsConfig(ConfigModel):
    """Where each part of an event is found in a posted object, as dotted paths."""

    labels: str = "labels"  # an object whose entries become labels
    text: str = "message"  # missing: ""
    fingerprint: str | None = None  # none (or missing in the body): a hash of labels and text
    status: str = "status"  # firing/alerting/problem or resolved/ok/normal; missing: firing
    # label name -> dotted path, e.g. {host: host.name}
    extra_labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("labels", "text", "fingerprint", "status")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        return None if value is None else check_path(value)

    @field_validator("extra_labels")
    @classmethod
    def _paths(cls, value: dict[str, str]) -> dict[str, str]:
        for path in value.values():
            check_path(path)
        return value


class WebhookConfig(ConfigModel):
    """One generic JSON webhook, at /hooks/<name>: an object, or a list of objects, per request."""

    auth: WebhookAuth | None = None
    allow_unauthenticated: bool = False  # true instead of auth: accept requests from anyone
    kind: EventKind = EventKind.ALERT  # the kind of event each posted object becomes
    fields: FieldsConfig = FieldsConfig()
    dedupe_window: Duration = timedelta(0)  # 0: every delivery is taken
    max_body: Annotated[int, Field(gt=0)] = DEFAULT_MAX_BODY  # bytes; larger requests get 413

    @model_validator(mode="after")
    def _auth_or_opt_out(self) -> Self:
        # Anyone who can reach the port could page the on-call phone, so openness must be asked for.
        if self.auth is None and not self.allow_unauthenticated:
            raise ValueError(
                "auth is required: set auth.token or auth.hmac, "
                "or allow_unauthenticated: true to accept requests from anyone"
            )
        if self.auth is not None and self.allow_unauthenticated:
            raise ValueError("set auth or allow_unauthenticated: true, not both")
        return self
