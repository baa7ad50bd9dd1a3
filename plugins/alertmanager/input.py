"""The `alertmanager` input: Alertmanager's webhook (payload v4) in, one Event per alert out."""

from __future__ import annotations

from aiohttp import web
from pydantic import ValidationError

from bridge.plugin.auth import check_authorization
from bridge.plugin.base import Input, PluginContext
from bridge.plugin.webhook import (
    answer,
    check_content_type,
    parse_json,
    read_body,
    reject,
    submit_and_answer,
    validation_message,
)
from bridge.plugins.alertmanager.config import AlertmanagerConfig
from bridge.plugins.alertmanager.payload import Payload


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
        if auth is not None:
            check_authorization(request, self.log, bearer=auth.bearer, basic=auth.basic)
