"""The `wecom_app` output: text messages to users through a WeCom self-built app (应用消息)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import aiohttp

from bridge.plugin import ChatApiError, ChatOutput, Job, Outcome, OutcomeKind, PluginContext
from bridge.plugins.wecom.config import WecomAppOutputConfig
from bridge.plugins.wecom.output import MAX_BYTES, split_bytes

TOKEN_MARGIN = 300.0  # renew the access token this long before WeCom's expires_in
# The access token was refused: 40014 invalid, 42001 expired. Fetch a new one, try once more.
TOKEN_REFUSED = frozenset({40014, 42001})
# "Not now" rather than "never" (WeCom's global error codes): -1 system busy, 45009 API
# frequency over the limit, 45033 too many concurrent calls.
_BUSY = {-1: 503, 45009: 429, 45033: 429}
_THROTTLE_WAIT = 60.0  # WeCom's limits are per minute and it gives no Retry-After
_ERRMSG = 200  # characters of WeCom's errmsg kept in a reason
_MAX_ANSWER = 64 * 1024


class _TokenRefusedError(ChatApiError):
    """The access token was not accepted; still so after a fresh one: retry later."""

    @property
    def retryable(self) -> bool:
        return True


class WecomAppOutput(ChatOutput[WecomAppOutputConfig]):
    """Sends `msgtype: text` app messages (POST /cgi-bin/message/send?access_token=...).

    The channel is the user id (touser) the wecom input recorded; WeCom apps have no threads,
    so the thread is ignored. The access token comes from /cgi-bin/gettoken (corp id and the
    app's Secret), is kept until shortly before it expires, and is fetched again once when
    WeCom refuses it. Texts over 2048 bytes are split into numbered parts within the byte
    limit (or truncated with split_long: false). errcode 0 is sent (the ref is WeCom's
    msgid); busy and throttling errcodes retry (throttling after a minute); any other
    errcode fails. Secrets ride in the query, so URLs are never logged and reasons are
    scrubbed of the Secret and the token.
    """

    type_name = "wecom_app"
    config_class = WecomAppOutputConfig
    # The base class splits by characters; parts that fit in 2048 bytes are never longer.
    max_chars = MAX_BYTES

    def __init__(self, config: WecomAppOutputConfig, ctx: PluginContext) -> None:
        super().__init__(config, ctx)
        self._token = ""
        self._token_until = 0.0
        self._token_lock = asyncio.Lock()

    async def deliver(self, jobs: Sequence[Job]) -> list[Outcome]:
        return [await self._deliver_parts(job) for job in jobs]

    async def _deliver_parts(self, job: Job) -> Outcome:
        # Cut by bytes here (as the robot output does); the base class posts each part and
        # classifies any refusal, so a failed part stops the job.
        refs: list[str] = []
        for part in split_bytes(job.text, split=self.config.split_long):
            outcome = await self._deliver_one(replace(job, text=part))
            if outcome.kind is not OutcomeKind.SENT:
                return outcome
            refs.append(outcome.ref)
        return Outcome(job.id, OutcomeKind.SENT, ref=",".join(refs))

    async def post(self, channel: str, thread: str, text: str) -> str:
        if not channel:
            raise ChatApiError("no user to send to: set the output's channel", status=400)
        body = {
            "touser": channel,
            "msgtype": "text",
            "agentid": self.config.agent_id,
            "text": {"content": text},
        }
        try:
            answer = await self._send(body, await self._access_token())
        except _TokenRefusedError:
            # Revoked or expired early: one more try with a new token, then give up for now.
            answer = await self._send(body, await self._access_token(renew=True))
        invalid = str(answer.get("invaliduser") or "")
        if invalid and channel in invalid.split("|"):
            # errcode 0 with the user refused: not in the app's visible range, or no such user.
            raise ChatApiError(
                "WeCom did not deliver: the user is not in the app's visible range", status=400
            )
        self.log.info("chat_posted", chars=len(text))
        return str(answer.get("msgid") or "")

    async def _access_token(self, *, renew: bool = False) -> str:
        async with self._token_lock:
            now = time.monotonic()
            if self._token and now < self._token_until and not renew:
                return self._token
            params = {
                "corpid": self.config.corp_id,
                "corpsecret": self.config.corp_secret.get_secret_value(),
            }
            answer = await self._call("GET", "/cgi-bin/gettoken", params)
            token, expires = answer.get("access_token"), answer.get("expires_in")
            if not isinstance(token, str) or not token or not isinstance(expires, int):
                raise ChatApiError("WeCom sent no access_token", status=502)
            self._token = token
            self._token_until = now + max(0.0, expires - TOKEN_MARGIN)
            return token

    async def _send(self, body: dict[str, Any], token: str) -> dict[str, Any]:
        return await self._call("POST", "/cgi-bin/message/send", {"access_token": token}, body)

    async def _call(
        self,
        method: str,
        path: str,
        params: Mapping[str, str],
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Call the API; the answer when its errcode is 0, else ChatApiError."""
        async with self.ctx.http.request(
            method,
            self.config.api_url + path,
            params=params,
            json=body,
            timeout=aiohttp.ClientTimeout(total=self.config.timeout.total_seconds()),
            allow_redirects=False,  # a redirect would carry the secret somewhere unconfigured
        ) as response:
            raw = await response.content.read(_MAX_ANSWER)
            status = response.status
        try:
            answer = json.loads(raw)
        except ValueError:  # not JSON: a proxy's error page, say
            answer = None
        if not 200 <= status < 300 or not isinstance(answer, dict):
            raise ChatApiError(f"WeCom answered HTTP {status}", status=status)
        errcode = answer.get("errcode", 0)
        if errcode == 0:
            return answer
        raise self._refusal(errcode, answer.get("errmsg"))

    def _refusal(self, errcode: Any, errmsg: Any) -> ChatApiError:
        message = " ".join(str(errmsg or "no errmsg").split())[:_ERRMSG]
        reason = f"WeCom refused the message (errcode {errcode}): {message}"
        # WeCom's hints may quote the request; neither secret may reach outcomes and logs.
        for secret in (self.config.corp_secret.get_secret_value(), self._token):
            if secret:
                reason = reason.replace(secret, "<redacted>")
        self.log.warning("chat_refused", errcode=str(errcode)[:20])
        if errcode in TOKEN_REFUSED:
            self._token = ""  # the next call fetches a new one
            return _TokenRefusedError(reason, status=401)
        status = _BUSY.get(errcode, 400) if isinstance(errcode, int) else 502
        wait = _THROTTLE_WAIT if status == 429 else None
        return ChatApiError(reason, status=status, retry_after=wait)
