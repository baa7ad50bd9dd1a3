"""The `telegram` output: sendMessage into a chat, as a reply to the command's message."""

from __future__ import annotations

import re
from typing import Any

import aiohttp

from bridge.plugin import ChatApiError, ChatOutput, retry_after
from bridge.plugins.telegram.config import TelegramOutputConfig
from bridge.plugins.telegram.update import parse_thread

_CHAT_ID = re.compile(r"-?\d+")
_DESCRIPTION = 200  # characters of Telegram's error description kept in a reason


def chat_id(channel: str) -> int | str:
    """A numeric chat id as a number, an @channel username as text (both are accepted)."""
    return int(channel) if _CHAT_ID.fullmatch(channel) else channel


def _seconds(value: Any) -> float | None:
    # JSON true is a Python int too; it is no number of seconds.
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


class TelegramOutput(ChatOutput[TelegramOutputConfig]):
    """Posts with the Bot API's sendMessage (plain text: no parse_mode, so nothing is markup).

    The channel is the chat id; the thread is what the telegram input recorded: the
    command's message id, answered with reply_parameters (allow_sending_without_reply, so a
    deleted command still gets its answer), and the forum topic's message_thread_id if any.
    Refusals come as `{"ok": false, "error_code", "description", "parameters"}`: 429 waits
    parameters.retry_after, 5xx retries, the rest (400 chat not found, 403 bot blocked or
    removed, 401 bad token) fail. The token is part of the URL, so URLs are never logged and
    reasons are scrubbed of it.
    """

    type_name = "telegram"
    config_class = TelegramOutputConfig
    max_chars = 4096  # sendMessage: 1-4096 characters after entities parsing (§3.6)

    async def post(self, channel: str, thread: str, text: str) -> str:
        if not channel:
            raise ChatApiError("no chat to post to: set the output's channel", status=400)
        body: dict[str, Any] = {"chat_id": chat_id(channel), "text": text}
        topic, message_id = parse_thread(thread)
        if topic is not None:
            body["message_thread_id"] = topic
        if message_id is not None:
            body["reply_parameters"] = {
                "message_id": message_id,
                "allow_sending_without_reply": True,
            }
        elif thread:
            # Better an answer outside the thread than none at all.
            self.log.warning("thread_unusable", thread=thread[:40])
        token = self.config.token.get_secret_value()
        url = f"{self.config.api_url}/bot{token}/sendMessage"
        timeout = aiohttp.ClientTimeout(total=self.config.timeout.total_seconds())
        async with self.ctx.http.post(
            url, json=body, timeout=timeout, allow_redirects=False
        ) as response:
            try:
                answer = await response.json(content_type=None)
            except ValueError:  # not JSON: a proxy's error page, say
                answer = None
            status = response.status
            header_wait = response.headers.get("Retry-After", "")
        if isinstance(answer, dict) and answer.get("ok") is True:
            result = answer.get("result")
            message = result.get("message_id") if isinstance(result, dict) else None
            return str(message) if message is not None else ""
        raise self._refusal(answer, status, header_wait)

    def _refusal(self, answer: Any, status: int, header_wait: str) -> ChatApiError:
        header = retry_after(header_wait)
        if not isinstance(answer, dict):
            return ChatApiError(
                f"Telegram answered HTTP {status}", status=status, retry_after=header
            )
        code = answer.get("error_code")
        code = code if isinstance(code, int) and not isinstance(code, bool) else status
        description = " ".join(str(answer.get("description", "")).split())[:_DESCRIPTION]
        reason = f"Telegram refused the message ({code}): {description or 'no description'}"
        parameters = answer.get("parameters")
        parameters = parameters if isinstance(parameters, dict) else {}
        wait = _seconds(parameters.get("retry_after"))
        migrated = parameters.get("migrate_to_chat_id")
        if migrated is not None:
            # The group became a supergroup: its id changed, and only config can follow it.
            reason += f"; the chat is now {migrated}"
        # A description quoting the request must not carry the token into outcomes and logs.
        reason = reason.replace(self.config.token.get_secret_value(), "<redacted>")
        return ChatApiError(
            reason,
            status=code if code > 0 else status,
            retry_after=header if wait is None else wait,
        )
