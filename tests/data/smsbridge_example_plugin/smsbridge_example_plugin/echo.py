"""The `example_echo` input: POST {"text": ..., "labels": {...}} and it becomes one Event."""

from __future__ import annotations

from typing import Literal, Self

from aiohttp import web
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, model_validator

from bridge.config import ConfigModel
from bridge.events import Event, EventKind, Status
from bridge.plugin import (
    HttpInput,
    Parsed,
    check_content_type,
    load_json,
    parse_json,
    read_body,
    reject,
    secret_equal,
    sha256_hex,
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


class EchoInput(HttpInput[EchoConfig]):
    """Receives JSON at /hooks/<name>; answers 200 only after the body is stored in the inbox."""

    type_name = "example_echo"
    config_class = EchoConfig

    async def receive(self, request: web.Request) -> web.Response:
        # HttpInput.handle turns a reject(...) anywhere below into its JSON 4xx answer.
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            reject(401, "send Authorization: Bearer <token>", {"WWW-Authenticate": "Bearer"})
        if not secret_equal(token.strip(), self.config.token):
            self.log.warning("auth_failed", remote=request.remote)  # the token itself: never
            reject(403, "the token was not accepted")
        check_content_type(request)  # 415
        body = await read_body(request, 64 * 1024)  # 413
        parse_json(body)  # 400 when it is not JSON at all
        # accept() runs parse (422 when it raises ValueError), stores the body, answers 200
        # once it is stored, or 503 if the store is unavailable (the sender should retry).
        return await self.accept(body)

    def parse(self, body: bytes) -> Parsed:
        """Pure: the same body always gives the same event (a restart parses it again)."""
        raw = load_json(body)
        try:
            echo = EchoBody.model_validate(raw)
        except ValidationError as exc:
            raise ValueError(validation_message(exc)) from None
        event = Event(
            kind=self.config.kind,
            source=self.ctx.name,
            labels=echo.labels,
            text=echo.text,
            data=raw,
            fingerprint=sha256_hex(sorted(echo.labels.items()))[:16],
            status=Status(echo.status),
        )
        return Parsed([event])
