"""The `feishu` output: replies in the command's thread as an app, or custom bot webhook posts."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections.abc import Sequence
from typing import Any

import aiohttp

from bridge.plugin import Button, ChatApiError, ChatOutput, PluginContext, retry_after
from bridge.plugins.feishu.cards import card
from bridge.plugins.feishu.config import FeishuOutputConfig
from bridge.plugins.feishu.crypto import webhook_sign

TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"  # noqa: S105 - a path
TOKEN_MARGIN = 300.0  # renew the tenant token this long before Feishu's `expire`
# Codes that mean "too fast": the bot webhook's 11232, the gateway's 99991400, IM's 230020.
RATE_LIMITED = frozenset({11232, 99991400, 230020})
# The tenant token was refused (missing, invalid, expired): fetch a new one and try once more.
TOKEN_REFUSED = frozenset({99991661, 99991663, 99991668, 99991677})
HINTS = {
    19021: "the webhook's sign or timestamp was refused: check webhook_secret and the clock",
    19024: "the bot's keyword check refused the text",
    230002: "the bot is not in this chat",
    230011: "the message to reply to was recalled",
    10014: "the app_secret is wrong",
}
_SNIPPET = 200


class FeishuError(ChatApiError):
    """Feishu refused a call: `status` carries its `code` (or HTTP status), and whether a retry
    can help."""

    def __init__(
        self, reason: str, *, code: int, retryable: bool, retry_after: float | None = None
    ) -> None:
        super().__init__(reason, status=code, retry_after=retry_after)
        self._retryable = retryable

    @property
    def retryable(self) -> bool:
        return self._retryable


class _TokenRefusedError(FeishuError):
    """The tenant access token was not accepted."""


def _wait(response: aiohttp.ClientResponse) -> float | None:
    # Feishu's gateway says when its window resets in x-ogw-ratelimit-reset (seconds).
    return retry_after(response.headers.get("Retry-After")) or retry_after(
        response.headers.get("x-ogw-ratelimit-reset")
    )


class FeishuOutput(ChatOutput[FeishuOutputConfig]):
    """Posts `text` messages to Feishu / Lark.

    As an app (app_id/app_secret): a thread gets `POST /open-apis/im/v1/messages/{id}/reply`
    (in the thread, with `reply_in_thread`), a channel with no thread a new message in that chat
    (`receive_id_type=chat_id`); the tenant access token is fetched and renewed as needed. With
    only a bot webhook, everything goes into the webhook's group, signed when webhook_secret is
    set. Outcome refs are Feishu's message ids (the webhook returns none). Any `code` other than
    0 is a refusal: rate limits and server trouble retry, everything else fails with Feishu's msg.
    """

    type_name = "feishu"
    config_class = FeishuOutputConfig
    # The bot webhook takes at most 20 KB of JSON; at ≤4 bytes a character, 4000 fit with room.
    max_chars = 4000

    def __init__(self, config: FeishuOutputConfig, ctx: PluginContext) -> None:
        super().__init__(config, ctx)
        self._token = ""
        self._token_until = 0.0
        self._token_lock = asyncio.Lock()
        self._secrets = [
            secret.get_secret_value()
            for secret in (config.app_secret, config.webhook_token, config.webhook_secret)
            if secret is not None
        ]

    async def post(self, channel: str, thread: str, text: str) -> str:
        return await self._post(channel, thread, "text", {"text": text}, len(text))

    async def post_buttons(
        self, channel: str, thread: str, text: str, buttons: Sequence[Button]
    ) -> str:
        """An interactive card: the text, and the buttons under it; a press comes back to the
        app's callback URL (the `feishu` input) as card.action.trigger."""
        return await self._post(channel, thread, "interactive", card(text, buttons), len(text))

    async def _post(
        self, channel: str, thread: str, msg_type: str, content: dict[str, Any], chars: int
    ) -> str:
        # The IM API takes the content as a JSON string; the bot webhook as an object.
        encoded = json.dumps(content, ensure_ascii=False)
        if self.config.app_id and thread:
            path = f"/open-apis/im/v1/messages/{urllib.parse.quote(thread, safe='')}/reply"
            body = {
                "msg_type": msg_type,
                "content": encoded,
                "reply_in_thread": self.config.reply_in_thread,
            }
            document = await self._as_app(path, body)
        elif self.config.app_id and channel:
            body = {"receive_id": channel, "msg_type": msg_type, "content": encoded}
            document = await self._as_app(
                "/open-apis/im/v1/messages", body, {"receive_id_type": "chat_id"}
            )
        elif self.config.webhook_token is not None:
            document = await self._webhook(msg_type, content)
        else:
            reason = "nothing to post to: no thread or channel, and no webhook_token configured"
            raise FeishuError(reason, code=0, retryable=False)
        self.log.info("chat_posted", channel=channel, thread=thread, chars=chars)
        data = document.get("data")
        return str(data.get("message_id", "")) if isinstance(data, dict) else ""

    async def _webhook(self, msg_type: str, content: dict[str, Any]) -> dict[str, Any]:
        assert self.config.webhook_token is not None  # checked by the caller
        # A card goes under `card`, anything else under `content`.
        key = "card" if msg_type == "interactive" else "content"
        body: dict[str, Any] = {"msg_type": msg_type, key: content}
        if self.config.webhook_secret is not None:
            timestamp = int(time.time())
            secret = self.config.webhook_secret.get_secret_value()
            body = {"timestamp": str(timestamp), "sign": webhook_sign(secret, timestamp), **body}
        token = urllib.parse.quote(self.config.webhook_token.get_secret_value(), safe="")
        return await self._call(f"/open-apis/bot/v2/hook/{token}", body)

    async def _as_app(
        self, path: str, body: dict[str, Any], params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        try:
            return await self._call(path, body, params, token=await self._tenant_token())
        except _TokenRefusedError:
            # Revoked or expired early: one more try with a new token, then give up for now.
            token = await self._tenant_token(renew=True)
            return await self._call(path, body, params, token=token)

    async def _tenant_token(self, *, renew: bool = False) -> str:
        async with self._token_lock:
            now = time.monotonic()
            if self._token and now < self._token_until and not renew:
                return self._token
            assert self.config.app_secret is not None  # the config needs it with app_id
            body = {
                "app_id": self.config.app_id,
                "app_secret": self.config.app_secret.get_secret_value(),
            }
            document = await self._call(TOKEN_PATH, body)
            token, expire = document.get("tenant_access_token"), document.get("expire")
            if not isinstance(token, str) or not token or not isinstance(expire, int):
                raise FeishuError("Feishu sent no tenant_access_token", code=0, retryable=True)
            self._token = token
            self._token_until = now + max(0.0, expire - TOKEN_MARGIN)
            return token

    async def _call(
        self,
        path: str,
        body: dict[str, Any],
        params: dict[str, str] | None = None,
        *,
        token: str = "",
    ) -> dict[str, Any]:
        """POST JSON to the API; the parsed answer when `code` is 0, else FeishuError."""
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with self.ctx.http.post(
            self.config.api_url + path,
            params=params,
            data=json.dumps(body, ensure_ascii=False).encode(),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=self.config.timeout.total_seconds()),
            allow_redirects=False,  # a redirect would carry the token somewhere unconfigured
        ) as response:
            raw = await response.content.read(64 * 1024)
            return self._result(response, raw)

    def _result(self, response: aiohttp.ClientResponse, raw: bytes) -> dict[str, Any]:
        status = response.status
        try:
            document = json.loads(raw)
            # The webhook answers both `code` and the older `StatusCode`.
            code = int(document.get("code", document.get("StatusCode")))
        except (ValueError, TypeError, AttributeError):
            reason = f"Feishu answered HTTP {status} without its JSON"
            if snippet := self._snippet(raw):
                reason += f": {snippet}"
            if status == 200:  # a proxy's page, not Feishu: the message did not go out
                raise FeishuError(reason, code=status, retryable=True) from None
            raise ChatApiError(reason, status=status, retry_after=_wait(response)) from None
        if code == 0 and status == 200:
            return dict(document)
        message = self._snippet(str(document.get("msg") or document.get("StatusMessage") or ""))
        reason = f"Feishu refused it: code {code} {message}".rstrip()
        if code in HINTS:
            reason += f" ({HINTS[code]})"
        self.log.warning("chat_refused", code=code, status=status)
        if code in TOKEN_REFUSED:
            self._token = ""  # the next call fetches a new one
            raise _TokenRefusedError(reason, code=code, retryable=True)
        retryable = code in RATE_LIMITED or status in (408, 429) or status >= 500
        raise FeishuError(
            reason, code=code or status, retryable=retryable, retry_after=_wait(response)
        )

    def _snippet(self, raw: bytes | str) -> str:
        """The start of a text, on one line, without our secrets or the tenant token in it."""
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        text = " ".join(text.split())
        for secret in (*self._secrets, self._token):
            if secret:
                text = text.replace(secret, "<redacted>")
        return text[:_SNIPPET]
