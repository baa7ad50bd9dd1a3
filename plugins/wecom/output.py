"""The `wecom` output: text messages through a WeCom (企业微信) group robot webhook."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import aiohttp

from bridge.plugin import ChatApiError, ChatOutput, Job, Outcome, OutcomeKind, split_text
from bridge.plugins.wecom.config import WecomOutputConfig

MAX_BYTES = 2048  # msgtype text: content of at most 2048 bytes of UTF-8 (§3.5)
_ERRMSG = 200  # characters of WeCom's errmsg kept in a reason
# errcodes that mean "not now" rather than "never" (WeCom's global error code list):
# -1 system busy; 45009 API call frequency over the limit (the 20 a minute); 45033 too many
# concurrent calls. Every other non-zero errcode (93000 invalid webhook url / robot removed,
# 40008 invalid message type, 44004 empty content, ...) will not change by retrying.
_BUSY = {-1: 503, 45009: 429, 45033: 429}
_MIN_CHARS = 64  # split_text keeps 8 characters for " (n/m)", ~40 for its truncation note
_THROTTLE_WAIT = 60.0  # the limit is per minute, and WeCom gives no Retry-After


def split_bytes(text: str, limit: int = MAX_BYTES, *, split: bool = True) -> list[str]:
    """split_text's parts (numbered, or one truncated part), each at most `limit` UTF-8 bytes.

    Characters take 1-4 bytes, so the character budget shrinks until every part fits:
    mostly ASCII keeps long parts, Chinese (3 bytes) gets about a third of them.
    """
    chars = limit
    while chars > _MIN_CHARS:  # split_text needs room beside " (n/m)"; WeCom's limit has plenty
        parts = split_text(text, chars, split=split)
        longest = max(len(part.encode()) for part in parts)
        if longest <= limit:
            return parts
        # Strictly smaller each round; at limit/4 characters even 4-byte text fits.
        chars = min(chars - 1, chars * limit // longest)
    raise ValueError(f"parts of at most {limit} bytes leave no room for text")


class WecomOutput(ChatOutput[WecomOutputConfig]):
    """Posts `msgtype: text` to a group robot's webhook (POST ...?key=<KEY>, JSON).

    A group robot speaks only in its own group and has no threads or message ids: the
    channel and thread are ignored (one output per group) and the ref is empty. Texts over
    2048 bytes are split into numbered parts, each within the byte limit (or truncated with
    split_long: false). The answer is `{"errcode": 0, "errmsg": "ok"}`; busy and throttling
    errcodes retry (throttling after a minute), any other errcode fails. The key is the only
    credential and sits in the URL's query, so URLs are never logged and reasons are
    scrubbed of it.
    """

    type_name = "wecom"
    config_class = WecomOutputConfig
    # The base class splits by characters; parts that fit in 2048 bytes are never longer.
    max_chars = MAX_BYTES

    async def deliver(self, jobs: Sequence[Job]) -> list[Outcome]:
        return [await self._deliver_parts(job) for job in jobs]

    async def _deliver_parts(self, job: Job) -> Outcome:
        # Cut by bytes here; the base class then posts each part whole (it fits max_chars)
        # and classifies any refusal, so a failed part stops the job as it would there.
        refs: list[str] = []
        for part in split_bytes(job.text, split=self.config.split_long):
            outcome = await self._deliver_one(replace(job, text=part))
            if outcome.kind is not OutcomeKind.SENT:
                return outcome
            refs.append(outcome.ref)
        return Outcome(job.id, OutcomeKind.SENT, ref=",".join(refs))

    async def post(self, channel: str, thread: str, text: str) -> str:
        body = {"msgtype": "text", "text": {"content": text}}
        timeout = aiohttp.ClientTimeout(total=self.config.timeout.total_seconds())
        async with self.ctx.http.post(
            self.config.api_url,
            params={"key": self.config.key.get_secret_value()},
            json=body,
            timeout=timeout,
            allow_redirects=False,
        ) as response:
            try:
                answer = await response.json(content_type=None)
            except ValueError:  # not JSON: a proxy's error page, say
                answer = None
            status = response.status
        if not 200 <= status < 300 or not isinstance(answer, dict):
            raise ChatApiError(f"WeCom answered HTTP {status}", status=status)
        errcode = answer.get("errcode")
        if errcode == 0:
            return ""
        raise self._refusal(errcode, answer.get("errmsg"))

    def _refusal(self, errcode: Any, errmsg: Any) -> ChatApiError:
        message = " ".join(str(errmsg or "no errmsg").split())[:_ERRMSG]
        reason = f"WeCom refused the message (errcode {errcode}): {message}"
        # WeCom's hints quote request details; the key must not reach outcomes and logs.
        reason = reason.replace(self.config.key.get_secret_value(), "<redacted>")
        status = _BUSY.get(errcode, 400) if isinstance(errcode, int) else 502
        wait = _THROTTLE_WAIT if status == 429 else None
        return ChatApiError(reason, status=status, retry_after=wait)
