"""The `alertmanager` input: Alertmanager's webhook (payload v4) in, one Event per alert out."""

from __future__ import annotations

import base64
import binascii
from typing import NoReturn

from aiohttp import web
from pydantic import ValidationError

from bridge.inbound import (
    RequestRejectedError,
    answer,
    check_content_type,
    parse_json,
    read_body,
    reject,
    secret_equal,
    submit_and_answer,
    validation_message,
)
from bridge.plugin import Input, PluginContext
from bridge.plugins.alertmanager.config import AlertmanagerConfig
from bridge.plugins.alertmanager.payload import Payload

REALM = 'realm="smsbridge"'


class AlertmanagerInput(Input):
    """Receives Alertmanager notifications at /hooks/<name>.

    Answers: 200 once the events are stored; 503 when they could not be (Alertmanager retries
    5xx); 400 malformed JSON; 401 no credentials; 403 wrong credentials; 413 body too large;
    415 not application/json; 422 not a version-4 payload. Alertmanager does not retry 4xx.
    """

    type_name = "alertmanager"
    config_class = AlertmanagerConfig
    config: AlertmanagerConfig

    def __init__(self, config: AlertmanagerConfig, ctx: PluginContext) -> None:
        super().__init__(config, ctx)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("", self._handle)]

    async def _handle(self, request: web.Request) -> web.Response:
        return await answer(self.ctx, self._receive(request))

    async def _receive(self, request: web.Request) -> web.Response:
        self._authenticate(request)
        check_content_type(request)
        raw = parse_json(await read_body(request, self.config.max_body))
        if not isinstance(raw, dict):
            reject(422, "the body: expected an object")
        try:
            payload = Payload.model_validate(raw)
        except ValidationError as exc:
            reject(422, validation_message(exc))
        if payload.truncated_alerts:
            # Alertmanager's max_alerts cut the group; those alerts never reach us.
            self.log.warning(
                "alerts_truncated", group_key=payload.group_key, dropped=payload.truncated_alerts
            )
        return await submit_and_answer(
            self.ctx,
            payload.events(raw, self.ctx.name),
            dedupe_key=payload.dedupe_key(self.ctx.name),
            dedupe_window=self.config.dedupe_window.total_seconds(),
        )

    def _authenticate(self, request: web.Request) -> None:
        auth = self.config.auth
        if auth is None:
            return
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        value = value.strip()
        if auth.bearer is not None:
            if scheme.lower() != "bearer" or not value:
                self._challenge(request, "Bearer", "missing")
            accepted = secret_equal(value, auth.bearer)
        else:
            assert auth.basic is not None  # guaranteed by AlertmanagerAuth._exactly_one
            if scheme.lower() != "basic" or not value:
                self._challenge(request, "Basic", "missing")
            username, password = self._basic(request, value)
            # Both comparisons always run, so the timing does not tell which part was wrong.
            accepted = secret_equal(username, auth.basic.username) & secret_equal(
                password, auth.basic.password
            )
        if not accepted:
            self.log.warning("auth_failed", reason="wrong", remote=request.remote)
            reject(403, "the credentials were not accepted")

    def _basic(self, request: web.Request, value: str) -> tuple[str, str]:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            self._challenge(request, "Basic", "malformed")
        username, colon, password = decoded.partition(":")
        if not colon:
            self._challenge(request, "Basic", "malformed")
        return username, password

    def _challenge(self, request: web.Request, scheme: str, reason: str) -> NoReturn:
        self.log.warning("auth_failed", reason=reason, remote=request.remote)
        raise RequestRejectedError(
            401,
            f"authentication required: send an Authorization: {scheme} header",
            {"WWW-Authenticate": f"{scheme} {REALM}"},
        )
