"""The `slack` output: chat.postMessage with a bot token (threads), or an incoming webhook."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import aiohttp

import bridge.plugins.slack.actions as actions
from bridge.plugin import Button, ChatApiError, ChatOutput, PluginContext, retry_after
from bridge.plugins.slack.config import SlackOutputConfig
from bridge.plugins.slack.text import escape

_CODE = re.compile(r"[a-z0-9_]{1,64}")
_MAX_ANSWER = 1024 * 1024  # bytes of an answer read; chat.postMessage answers a few KiB
# Slack's `error` codes (chat.postMessage docs) → the HTTP status that decides retrying, and
# what a person should do. Codes not listed are refusals that retrying cannot fix.
ERRORS: dict[str, tuple[int, str]] = {
    "ratelimited": (429, "Slack is rate limiting posts"),
    "internal_error": (503, "Slack had an internal error"),
    "fatal_error": (503, "Slack had an internal error"),
    "service_unavailable": (503, "Slack is unavailable"),
    "request_timeout": (503, "Slack timed out reading the post"),
    "invalid_auth": (401, "the bot token is not valid"),
    "not_authed": (401, "no bot token was accepted"),
    "token_revoked": (401, "the bot token was revoked"),
    "token_expired": (401, "the bot token expired"),
    "account_inactive": (401, "the app or its bot user was deactivated"),
    "missing_scope": (403, "the bot token lacks the chat:write scope"),
    "not_allowed_token_type": (403, "use the bot token (xoxb-…)"),
    "not_in_channel": (403, "the bot is not in the channel: /invite it there"),
    "is_archived": (403, "the channel is archived"),
    "restricted_action": (403, "the workspace does not let the bot post there"),
    "channel_not_found": (404, "no such channel, or the bot cannot see it"),
    "msg_too_long": (400, "the message is too long"),
    "no_text": (400, "the message is empty"),
}
# Incoming webhooks answer errors as plain-text codes with an HTTP status.
_WEBHOOK_HINTS = {
    "invalid_token": "the webhook URL is not valid",
    "no_service": "the webhook was removed or disabled",
    "channel_is_archived": "the webhook's channel is archived",
    "action_prohibited": "an admin restricted posting there",
    "channel_not_found": "the webhook's channel is gone",
}


def refusal(code: Any, retry_after: float | None = None) -> ChatApiError:
    """The ChatApiError for an `ok: false` answer; odd codes are not echoed (no secrets)."""
    shown = code if isinstance(code, str) and _CODE.fullmatch(code) else "unknown_error"
    status, hint = ERRORS.get(shown, (400, "Slack refused the post"))
    return ChatApiError(
        f"Slack refused the post: {shown} ({hint})",
        status=status,
        retry_after=retry_after if status == 429 else None,
    )


class SlackOutput(ChatOutput[SlackOutputConfig]):
    """Posts into a Slack channel, in the thread when the job has one (its parent `ts`).

    With a bot token, the message id returned is the post's `ts`. With an incoming webhook
    the channel is the webhook's own, and `thread_ts` is passed along for Slack to honour.
    Texts are escaped (&, <, >), so an SMS cannot mention @channel or forge a link.
    """

    type_name = "slack"
    config_class = SlackOutputConfig
    max_chars = 4000  # Slack truncates at 40,000 and asks for at most 4,000 (protocols.md §3.1)

    def __init__(self, config: SlackOutputConfig, ctx: PluginContext) -> None:
        super().__init__(config, ctx)
        self._timeout = aiohttp.ClientTimeout(total=config.timeout.total_seconds())

    async def post(self, channel: str, thread: str, text: str) -> str:
        return await self._post(channel, thread, {"text": escape(text)})

    async def post_buttons(
        self, channel: str, thread: str, text: str, buttons: Sequence[Button]
    ) -> str:
        """The text with the buttons in an actions block under it; pressing one sends a
        block_actions payload to the app's Interactivity Request URL (the `slack` input)."""
        shown = escape(text)
        document = {"text": shown, "blocks": actions.blocks(shown, buttons)}
        return await self._post(channel, thread, document)

    async def _post(self, channel: str, thread: str, document: dict[str, Any]) -> str:
        if thread:
            document["thread_ts"] = thread
        if self.config.webhook_url is not None:
            return await self._webhook(self.config.webhook_url.get_secret_value(), document)
        if not channel:
            raise ChatApiError("no channel: the job has none and the output's channel is unset")
        assert self.config.token is not None  # guaranteed by SlackOutputConfig
        headers = {"Authorization": f"Bearer {self.config.token.get_secret_value()}"}
        answer = await self._send(
            f"{self.config.api_url}/chat.postMessage", {"channel": channel, **document}, headers
        )
        if not isinstance(answer, dict):
            raise ChatApiError("Slack's answer is not its JSON", status=502)
        if answer.get("ok") is not True:
            self.log.warning("slack_post_refused", error=str(answer.get("error"))[:64])
            raise refusal(answer.get("error"))
        if answer.get("warning"):
            self.log.info("slack_post_warning", warning=str(answer["warning"])[:200])
        return str(answer.get("ts", ""))

    async def _send(self, url: str, document: dict[str, Any], headers: dict[str, str]) -> Any:
        """POST JSON to the Web API; the parsed answer, or ChatApiError for an HTTP refusal."""
        body = json.dumps(document, ensure_ascii=False).encode()
        async with self.ctx.http.post(
            url,
            data=body,
            headers={**headers, "Content-Type": "application/json; charset=utf-8"},
            timeout=self._timeout,
            allow_redirects=False,
        ) as response:
            after = retry_after(response.headers.get("Retry-After"))
            if response.status == 429:
                raise refusal("ratelimited", after)
            if response.status != 200:
                raise ChatApiError(f"Slack answered HTTP {response.status}", status=response.status)
            try:
                return json.loads(await response.content.read(_MAX_ANSWER))
            except ValueError:
                return None

    async def _webhook(self, url: str, document: dict[str, Any]) -> str:
        """POST to an incoming webhook; it answers `ok`, or an error code with a 4xx/5xx."""
        body = json.dumps(document, ensure_ascii=False).encode()
        async with self.ctx.http.post(
            url,
            data=body,
            headers={"Content-Type": "application/json; charset=utf-8"},
            timeout=self._timeout,
            allow_redirects=False,
        ) as response:
            if response.status == 200:
                return ""  # webhooks give no message id
            code = (await response.content.read(200)).decode("utf-8", "replace").strip()
            shown = code if _CODE.fullmatch(code) else "unknown_error"
            hint = _WEBHOOK_HINTS.get(shown, "Slack refused the post")
            self.log.warning("slack_post_refused", error=shown, status=response.status)
            raise ChatApiError(
                f"the Slack webhook answered HTTP {response.status}: {shown} ({hint})",
                status=response.status,
                retry_after=retry_after(response.headers.get("Retry-After")),
            )
