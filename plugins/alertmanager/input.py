"""The `alertmanager` input: Alertmanager's webhook (payload v4) in, one Event per alert out."""

from __future__ import annotations

from aiohttp import web

from bridge.plugin import (
    HttpInput,
    Parsed,
    check_authorization,
    check_content_type,
    load_model,
    read_body,
    reject,
)
from bridge.plugins.alertmanager.config import AlertmanagerConfig
from bridge.plugins.alertmanager.payload import Payload


class AlertmanagerInput(HttpInput[AlertmanagerConfig]):
    """Receives Alertmanager notifications at /hooks/<name>.

    Answers: 200 once the body is stored, listing alerts that could not be used (the others are
    accepted); 503 when it could not be stored (Alertmanager retries 5xx); 400 malformed JSON;
    401 no credentials; 403 wrong credentials; 413 body too large; 415 not application/json;
    422 not a version-4 payload. Alertmanager does not retry 4xx.
    """

    type_name = "alertmanager"
    config_class = AlertmanagerConfig

    async def receive(self, request: web.Request) -> web.Response:
        auth = self.config.auth
        if auth is not None:
            check_authorization(request, self.log, bearer=auth.bearer, basic=auth.basic)
        check_content_type(request)
        body = await read_body(request, self.config.max_body)
        try:
            payload = load_model(Payload, body)
        except ValueError as exc:
            reject(400 if str(exc).startswith("malformed JSON") else 422, str(exc))
        if payload.truncated_alerts:
            # Alertmanager's max_alerts cut the group; those alerts never reach us.
            self.log.warning(
                "alerts_truncated", group_key=payload.group_key, dropped=payload.truncated_alerts
            )
        parsed, dedupe_key = payload.parse(self.ctx.name, self._window)
        return await self.accept(
            body,
            parsed,
            dedupe_key=dedupe_key,
            dedupe_window=self._window,
        )

    def parse(self, body: bytes) -> Parsed:
        return load_model(Payload, body).parse(self.ctx.name, self._window)[0]

    @property
    def _window(self) -> float:
        return self.config.dedupe_window.total_seconds()
