"""Behind a TLS proxy: X-Forwarded-* believed from the configured proxies only, the client
being the rightmost address no trusted proxy wrote."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web

from bridge.config import ConfigModel
from bridge.plugin.base import Input, Parsed
from bridge.runtime.daemon import Daemon
from bridge.testing import DaemonFactory


class EchoConfig(ConfigModel):
    """No options."""


class EchoInput(Input[EchoConfig]):
    """Answers with how the request looks to the daemon's handlers."""

    type_name = "echo"
    config_class = EchoConfig

    def routes(self) -> list[web.RouteDef]:
        return [web.get("", self._handle)]

    def parse(self, body: bytes) -> Parsed:
        return Parsed([])

    async def _handle(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"remote": request.remote, "scheme": request.scheme, "host": request.host}
        )


async def seen(daemon: Daemon, headers: dict[str, str]) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{daemon.url}/hooks/echo", headers=headers) as response,
    ):
        assert response.status == 200
        answer: dict[str, Any] = await response.json()
        return answer


FORWARDED = {
    "X-Forwarded-For": "198.51.100.7, 203.0.113.9",  # the first written by the client itself
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "sms.example.com",
}


async def test_a_trusted_proxy_says_who_the_client_is(smsbridge_daemon: DaemonFactory) -> None:
    daemon = await smsbridge_daemon(
        "server: {trusted_proxies: [127.0.0.1, '10.0.0.0/8']}\ninputs: {echo: {type: echo}}\n",
        types=[EchoInput],
    )
    assert await seen(daemon, FORWARDED) == {
        "remote": "203.0.113.9",
        "scheme": "https",
        "host": "sms.example.com",
    }
    # A chain of trusted proxies: the client is the first address none of them is.
    chained = {**FORWARDED, "X-Forwarded-For": "198.51.100.7, 203.0.113.9, 10.1.2.3"}
    assert (await seen(daemon, chained))["remote"] == "203.0.113.9"
    # Headers the proxy did not set leave the request as it came.
    plain = await seen(daemon, {})
    assert plain["remote"] == "127.0.0.1"
    assert plain["scheme"] == "http"


async def test_forwarded_headers_from_anyone_else_are_ignored(
    smsbridge_daemon: DaemonFactory,
) -> None:
    for proxies in ("[]", "['10.0.0.0/8']"):
        daemon = await smsbridge_daemon(
            f"server: {{trusted_proxies: {proxies}}}\ninputs: {{echo: {{type: echo}}}}\n",
            types=[EchoInput],
        )
        answer = await seen(daemon, FORWARDED)
        assert answer["remote"] == "127.0.0.1"
        assert answer["scheme"] == "http"
        assert answer["host"].startswith("127.0.0.1:")
