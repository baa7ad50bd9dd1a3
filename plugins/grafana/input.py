"""The `grafana` input: Grafana's webhook contact point (payload version 1) in, one Event per alert.

Authentication, any of which the config may ask for (and at least one, or explicitly none):

* `auth.bearer`: Grafana's "Authorization Header" (scheme Bearer, the default) with the token.
* `auth.basic`: Grafana's "HTTP Basic Authentication" username and password.
* `auth.hmac`: Grafana's optional "HMAC Signature" (protocols.md §2.1, Grafana 12+):
  the header carries the bare lower-case hex of HMAC-SHA256(secret, raw body), without any
  `sha256=` prefix. When the contact point sets a timestamp header, Grafana puts the Unix time
  in seconds there and signs `<seconds>:<raw body>` instead. The signature header defaults to
  `X-Grafana-Alerting-Signature`, as protocols.md and Grafana's form say.

Decisions where the document leaves things open:

* While `hmac.header` is left at its default, a signature in `X-Grafana-Alert-Signature` is taken
  too: grafana/alerting's `http/hmac.go` sends that name when the contact point's header field is
  left empty, whatever the form's placeholder shows.
* The timestamp header has no default name in Grafana, so none here: configure the same name on
  both sides. With it, a timestamp more than `hmac.max_skew` (default 5 minutes, §6.6) from this
  server's clock is refused; a request replayed inside that window carries the same dedupe key
  as the original and is acknowledged without paging again.
* Hex digits are compared case-insensitively, in constant time, over the raw bytes before parsing.
* No signature (or no timestamp, when one is configured) is 401; a malformed timestamp is 401
  too; a wrong signature or a timestamp outside the window is 403.

Grafana does not retry a failed notification within a flush (§2.1): a 503 waits for the next one.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from aiohttp import web

from bridge.plugin import (
    HttpInput,
    Parsed,
    challenge,
    check_authorization,
    check_content_type,
    load_json,
    parse_json,
    read_body,
    reject,
    secret_equal,
)
from bridge.plugins.grafana.config import GrafanaAuth, GrafanaConfig, GrafanaHmac
from bridge.plugins.grafana.payload import PayloadError, read_payload


def grafana_signature(secret: str, body: bytes, timestamp: str | None = None) -> str:
    """What Grafana sends for `body`: hex HMAC-SHA256 of the body, or of `<timestamp>:<body>`."""
    signed = body if timestamp is None else timestamp.encode() + b":" + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


class GrafanaInput(HttpInput[GrafanaConfig]):
    """Receives Grafana notifications at /hooks/<name> (POST, or PUT if the contact point says so).

    Answers: 200 once the events are stored; 503 when they could not be; 400 malformed JSON;
    401 no credentials or signature; 403 wrong ones; 413 body too large; 415 not
    application/json; 422 not a version-1 payload (naming the field).
    """

    type_name = "grafana"
    config_class = GrafanaConfig

    def routes(self) -> list[web.RouteDef]:
        return [web.post("", self.handle), web.put("", self.handle)]

    async def receive(self, request: web.Request) -> web.Response:
        auth = self.config.auth
        signing = auth.hmac if auth is not None else None
        if auth is not None:
            self._check_authorization(request, auth)
        # Refuse an unsigned request before reading its body.
        signed = self._signature_headers(request, signing) if signing is not None else None
        check_content_type(request)
        body = await read_body(request, self.config.max_body)
        if signing is not None and signed is not None:
            # The signature covers the raw bytes: checked before parsing (§6.6).
            self._check_signature(request, signing, body, *signed)
        raw = parse_json(body)
        try:
            payload = read_payload(raw)
        except PayloadError as exc:
            reject(422, str(exc))
        if payload.truncated_alerts:
            # The contact point's maxAlerts cut the group; those alerts never reach us.
            self.log.warning(
                "alerts_truncated", group_key=payload.group_key, dropped=payload.truncated_alerts
            )
        return await self.accept(
            body,
            Parsed(payload.events(raw, self.ctx.name)),
            dedupe_key=payload.dedupe_key(self.ctx.name),
            dedupe_window=self.config.dedupe_window.total_seconds(),
        )

    def parse(self, body: bytes) -> Parsed:
        raw = load_json(body)
        try:
            return Parsed(read_payload(raw).events(raw, self.ctx.name))
        except PayloadError as exc:
            raise ValueError(str(exc)) from None

    # --- Authorization: Bearer / Basic --------------------------------------------------------

    def _check_authorization(self, request: web.Request, auth: GrafanaAuth) -> None:
        check_authorization(request, self.log, bearer=auth.bearer, basic=auth.basic)

    # --- HMAC signature -----------------------------------------------------------------------

    def _signature_headers(self, request: web.Request, auth: GrafanaHmac) -> tuple[str, str | None]:
        """The signature and (when configured) the timestamp, or a 401 saying which is missing."""
        signature = next(
            (value for name in auth.headers if (value := request.headers.get(name, "").strip())),
            "",
        )
        params = f'header="{auth.header}"'
        if not signature:
            challenge(request, self.log, "HMAC", f"sign the body in {auth.header}", params)
        if auth.timestamp_header is None:
            return signature, None
        timestamp = request.headers.get(auth.timestamp_header, "").strip()
        if not timestamp:
            what = f"send the signing time in {auth.timestamp_header}"
            challenge(request, self.log, "HMAC", what, params)
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
            what = f"{auth.timestamp_header} must be Unix time in seconds"
            challenge(request, self.log, "HMAC", what, params)
        return signature, timestamp

    def _check_signature(
        self,
        request: web.Request,
        auth: GrafanaHmac,
        body: bytes,
        signature: str,
        timestamp: str | None,
    ) -> None:
        expected = grafana_signature(auth.secret.get_secret_value(), body, timestamp)
        if not secret_equal(signature.lower(), expected):
            self.log.warning("auth_failed", reason="bad_signature", remote=request.remote)
            reject(403, "the signature does not match the body")
        if timestamp is not None:
            skew = abs(time.time() - int(timestamp))
            if skew > auth.max_skew.total_seconds():
                self.log.warning("auth_failed", reason="stale_timestamp", remote=request.remote)
                reject(
                    403,
                    f"the signing time is {int(skew)} s from this server's clock; "
                    f"at most {int(auth.max_skew.total_seconds())} s is accepted",
                )
