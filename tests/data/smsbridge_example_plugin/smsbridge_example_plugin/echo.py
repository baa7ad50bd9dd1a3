"""The `example_echo` input: POST {"text": ..., "labels": {...}} and it becomes one Event."""

from __future__ import annotations

from typing import Literal, Self

from aiohttp import web
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, model_validator

from bridge.config import ConfigModel
from bridge.events import Event, EventKind, Status
from bridge.plugin import (
    Input,
    PluginContext,
    answer,
    check_content_type,
    parse_json,
    read_body,
    reject,
    secret_equal,
    sha256_hex,
    submit_and_answer,
    validation_message,
)


class EchoConfig(ConfigModel):
    """Options under `inputs.<name>:`; unknown keys are config errors (ConfigModel forbids them)."""

    token: SecretStr  # write ${ECHO_TOKEN} in the config; never logged, never echoed
    kind: EventKind = EventKind.ALERT

    @model_validator(mode="after")
    def _token_set(self) -> Self:
        if not self.token.get_secret_value():
            raise ValueError("token must not be empty")
        return self


class EchoBody(BaseModel):
    """What a request carries."""

    model_config = ConfigDict(strict=True, extra="forbid")

    text: str
    labels: dict[str, str] = {}
    status: Literal["firing", "resolved"] = "firing"


class EchoInput(Input):
    """Receives JSON at /hooks/<name>; answers 200 only after submit() stored the event."""

    type_name = "example_echo"
    config_class = EchoConfig
    config: EchoConfig

    def __init__(self, config: EchoConfig, ctx: PluginContext) -> None:
        super().__init__(config, ctx)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("", self._handle)]

    async def _handle(self, request: web.Request) -> web.Response:
        # answer() turns a reject(...) anywhere below into its JSON 4xx answer and a log line.
        return await answer(self.ctx, self._receive(request))

    async def _receive(self, request: web.Request) -> web.Response:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            reject(401, "send Authorization: Bearer <token>", {"WWW-Authenticate": "Bearer"})
        if not secret_equal(token.strip(), self.config.token):
            self.log.warning("auth_failed", remote=request.remote)  # the token itself: never
            reject(403, "the token was not accepted")
        check_content_type(request)  # 415
        raw = parse_json(await read_body(request, 64 * 1024))  # 413, 400
        try:
            body = EchoBody.model_validate(raw)
        except ValidationError as exc:
            reject(422, validation_message(exc))
        event = Event(
            kind=self.config.kind,
            source=self.ctx.name,
            labels=body.labels,
            text=body.text,
            data=raw,
            fingerprint=sha256_hex(sorted(body.labels.items()))[:16],
            status=Status(body.status),
        )
        # 200 once stored, 503 if the store is unavailable (the sender should retry).
        return await submit_and_answer(self.ctx, [event], dedupe_key="", dedupe_window=0)
