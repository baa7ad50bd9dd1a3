"""The `webhook` input: any JSON object (or list of objects) in, one Event per object out."""

from __future__ import annotations

import hashlib
import hmac
from typing import NoReturn

from aiohttp import web

from bridge.plugin import (
    HttpInput,
    Parsed,
    RequestRejectedError,
    check_content_type,
    load_json,
    parse_json,
    read_body,
    reject,
    secret_equal,
    sha256_hex,
)
from bridge.plugins.webhook.config import HmacAuth, WebhookConfig
from bridge.plugins.webhook.mapping import MappingError, map_body

REALM = 'realm="smsbridge"'


def body_signature(auth: HmacAuth, body: bytes) -> str:
    """What the sender puts in the signature header for `body`: prefix + hex HMAC."""
    key = auth.secret.get_secret_value().encode()
    return auth.signature_prefix + hmac.new(key, body, auth.algorithm).hexdigest()


class WebhookInput(HttpInput[WebhookConfig]):
    """Receives JSON at /hooks/<name> and maps it to Events by the configured dotted paths.

    Answers as AlertmanagerInput does: 200 after storing, 503 when storing failed, 400 / 401 /
    403 / 413 / 415, and 422 when a document cannot be mapped (naming the field).
    """

    type_name = "webhook"
    config_class = WebhookConfig

    async def receive(self, request: web.Request) -> web.Response:
        auth = self.config.auth
        signature = ""
        if auth is not None and auth.token is not None:
            self._check_token(request, auth.header, auth.token.get_secret_value())
        elif auth is not None and auth.hmac is not None:
            # Refuse an unsigned request before reading its body.
            signature = request.headers.get(auth.hmac.header, "").strip()
            if not signature:
                self._challenge(
                    request,
                    f'HMAC {REALM}, header="{auth.hmac.header}"',
                    f"authentication required: sign the body in {auth.hmac.header}",
                )
        check_content_type(request)
        body = await read_body(request, self.config.max_body)
        if auth is not None and auth.hmac is not None:
            # The signature covers the raw bytes: checked before parsing (§6.6).
            self._check_signature(request, auth.hmac, body, signature)
        parse_json(body)  # a body that is not JSON is a 400, before anything else
        return await self.accept(
            body,
            dedupe_key=sha256_hex("webhook", self.ctx.name, hashlib.sha256(body).hexdigest()),
            dedupe_window=self.config.dedupe_window.total_seconds(),
        )

    def parse(self, body: bytes) -> Parsed:
        try:
            events = map_body(
                load_json(body), self.config.fields, kind=self.config.kind, source=self.ctx.name
            )
        except MappingError as exc:
            raise ValueError(str(exc)) from None
        return Parsed(events)

    def _check_token(self, request: web.Request, header: str, token: str) -> None:
        value = request.headers.get(header, "").strip()
        scheme, _, rest = value.partition(" ")
        if scheme.lower() == "bearer":
            value = rest.strip()
        if not value:
            challenge = f"Bearer {REALM}" if header.lower() == "authorization" else f"Token {REALM}"
            self._challenge(
                request, challenge, f"authentication required: send the token in {header}"
            )
        if not secret_equal(value, token):
            self.log.warning("auth_failed", reason="wrong", remote=request.remote)
            reject(403, "the token was not accepted")

    def _check_signature(
        self, request: web.Request, auth: HmacAuth, body: bytes, signature: str
    ) -> None:
        prefix = auth.signature_prefix
        # Hex digits are case-insensitive; the prefix is matched as configured, ignoring case.
        given = signature.lower() if signature.lower().startswith(prefix.lower()) else ""
        if not secret_equal(given, body_signature(auth, body).lower()):
            self.log.warning("auth_failed", reason="bad_signature", remote=request.remote)
            reject(403, "the signature does not match the body")

    def _challenge(self, request: web.Request, challenge: str, message: str) -> NoReturn:
        self.log.warning("auth_failed", reason="missing", remote=request.remote)
        raise RequestRejectedError(401, message, {"WWW-Authenticate": challenge})
