"""A `grafana` input's config: Grafana's Authorization header, its HMAC signature, and limits."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Self

from pydantic import Field, SecretStr, model_validator

from bridge.config import ConfigModel, Duration, PositiveDuration
from bridge.plugin import DEFAULT_MAX_BODY, BasicCredentials, not_empty, require_auth

HeaderName = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")]

# protocols.md §2.1 and Grafana's contact-point form name this header; grafana/alerting's
# http/hmac.go falls back to X-Grafana-Alert-Signature when the form's field is left empty.
SIGNATURE_HEADER = "X-Grafana-Alerting-Signature"
SIGNATURE_HEADER_FALLBACK = "X-Grafana-Alert-Signature"


class GrafanaHmac(ConfigModel):
    """The contact point's "HMAC Signature": hex HMAC-SHA256 of the body, or of `<ts>:<body>`."""

    secret: SecretStr  # the contact point's HMAC secret, e.g. ${GRAFANA_HMAC}
    # The signature's header; when unset, Grafana's fallback X-Grafana-Alert-Signature is taken too.
    header: HeaderName = SIGNATURE_HEADER
    timestamp_header: HeaderName | None = None  # Grafana has no default: none means unsigned time
    max_skew: PositiveDuration = timedelta(minutes=5)  # a timestamp further off is refused

    @model_validator(mode="after")
    def _secret_set(self) -> Self:
        not_empty(self.secret, "secret")
        return self

    @property
    def headers(self) -> tuple[str, ...]:
        """Where the signature may arrive: the configured header, or either default name."""
        if "header" in self.model_fields_set:
            return (self.header,)
        return (SIGNATURE_HEADER, SIGNATURE_HEADER_FALLBACK)


class GrafanaAuth(ConfigModel):
    """At most one of `bearer` or `basic`, and/or `hmac`; at least one of them."""

    bearer: SecretStr | None = None  # "Authorization Header - Credentials", scheme Bearer
    basic: BasicCredentials | None = None
    hmac: GrafanaHmac | None = None

    @model_validator(mode="after")
    def _some_auth(self) -> Self:
        if self.bearer is not None and self.basic is not None:
            raise ValueError("set bearer or basic, not both (Grafana sends only one of them)")
        if self.bearer is None and self.basic is None and self.hmac is None:
            raise ValueError("set bearer (e.g. ${GRAFANA_TOKEN}) or basic, and/or hmac")
        if self.bearer is not None:
            not_empty(self.bearer, "bearer")
        return self


class GrafanaConfig(ConfigModel):
    """One Grafana webhook contact point, at /hooks/<name>."""

    auth: GrafanaAuth | None = None
    allow_unauthenticated: bool = False  # true instead of auth: accept requests from anyone
    # Grafana's default notification policy repeats every 4h: a repeat within it is not a new page.
    dedupe_window: Duration = timedelta(hours=4)
    max_body: Annotated[int, Field(gt=0)] = DEFAULT_MAX_BODY  # bytes; larger requests get 413

    @model_validator(mode="after")
    def _auth_or_opt_out(self) -> Self:
        require_auth(
            self.auth,
            self.allow_unauthenticated,
            "auth.bearer, auth.basic or auth.hmac (and the same on the Grafana contact point)",
        )
        return self
