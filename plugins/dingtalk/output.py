"""The `dingtalk` output: text messages through signed custom (webhook) group robots."""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
from yarl import URL

from bridge.plugin import ChatApiError, ChatOutput, PluginContext, retry_after
from bridge.plugins.dingtalk.config import DingTalkOutputConfig, Robot
from bridge.plugins.dingtalk.signing import signed_query

MUTED_FOR = 600.0  # 130101: over 20 a minute mutes the robot for 10 minutes
# errcodes in a 200 body that retrying can cure, and how long to wait first (None: backoff).
RETRYABLE: dict[int, float | None] = {
    -1: None,  # system busy
    130101: MUTED_FOR,  # send too fast, exceed 20 times per minute
    410100: MUTED_FOR,  # sent too fast, throttled
    90030: 3600.0,  # webhook over limit: the org's daily/monthly quota (protocols.md §3.3 [U])
}
# From DingTalk's custom robot error table: what a person must fix. Any other non-zero errcode
# fails the job too, with DingTalk's errmsg.
HINTS = {
    310000: "the robot's security settings refused it (keyword, sign or IP allow-list)",
    300001: "the access_token is unknown",
    400101: "the access_token is unknown",
    400102: "the robot is disabled",
    400013: "the group was dismissed",
    460101: "the message is too long",
}
_SNIPPET = 200


class DingTalkError(ChatApiError):
    """DingTalk refused a post: `status` carries its errcode, and whether a retry can help."""

    def __init__(
        self, reason: str, *, errcode: int, retryable: bool, retry_after: float | None = None
    ) -> None:
        super().__init__(reason, status=errcode, retry_after=retry_after)
        self._retryable = retryable

    @property
    def retryable(self) -> bool:
        return self._retryable


def mention(thread: str) -> str:
    """The staff id a thread names (see `bridge.plugins.dingtalk.input.thread_of`), or ""."""
    _, bar, staff_id = thread.rpartition("|")
    return staff_id if bar else ""


class DingTalkOutput(ChatOutput[DingTalkOutputConfig]):
    """Posts `msgtype: text` messages to a group through its custom robot.

    DingTalk robots have no threads: an answer or an SMS reply is a new message in the group
    the command came from (the robot configured for that conversationId, else the default
    robot), @-mentioning the person who sent the command. DingTalk returns no message id, so
    the outcome's ref is empty. Pacing: `rate_limit` defaults to the robot limit, 20 a minute
    (one output instance shares it between its robots).
    """

    type_name = "dingtalk"
    config_class = DingTalkOutputConfig
    # protocols.md gives no text limit; DingTalk's error table caps `content` at 5000. Room is
    # left for the "@<staff id> " mention put in front (DingTalk user ids are ≤ 64 characters).
    max_chars = 5000 - 66

    def __init__(self, config: DingTalkOutputConfig, ctx: PluginContext) -> None:
        super().__init__(config, ctx)
        self._secrets = [
            secret.get_secret_value()
            for robot in (config.robot(""), *config.robots.values())
            for secret in (robot.access_token, robot.secret)
            if secret is not None
        ]

    async def post(self, channel: str, thread: str, text: str) -> str:
        robot = self.config.robot(channel)
        body: dict[str, Any] = {"msgtype": "text", "text": {"content": text}}
        staff_id = mention(thread) if self.config.mention_sender else ""
        if staff_id:
            # The @userid in the text is where DingTalk renders the mention.
            body["text"]["content"] = f"@{staff_id} {text}"
            body["at"] = {"atUserIds": [staff_id], "isAtAll": False}
        seconds = self.config.timeout.total_seconds()
        async with self.ctx.http.post(
            self._url(robot),
            data=json.dumps(body, ensure_ascii=False).encode(),
            headers={"Content-Type": "application/json;charset=utf-8"},
            timeout=aiohttp.ClientTimeout(total=seconds),
            allow_redirects=False,  # a redirect would carry the token somewhere unconfigured
        ) as response:
            await self._check(response)
        self.log.info("chat_posted", channel=channel, chars=len(text))
        return ""

    def _url(self, robot: Robot) -> URL:
        secret = robot.secret.get_secret_value() if robot.secret is not None else None
        query = signed_query(robot.access_token.get_secret_value(), secret, int(time.time() * 1000))
        # Already encoded: yarl must not re-encode the sign's %2B and %3D.
        return URL(f"{self.config.api_url}/robot/send?{query}", encoded=True)

    async def _check(self, response: aiohttp.ClientResponse) -> None:
        """Return if DingTalk took the message; raise DingTalkError/ChatApiError if not."""
        raw = await response.content.read(64 * 1024)
        if response.status != 200:
            after = retry_after(response.headers.get("Retry-After"))
            reason = f"DingTalk answered HTTP {response.status}"
            if snippet := self._snippet(raw):
                reason += f": {snippet}"
            raise ChatApiError(reason, status=response.status, retry_after=after)
        try:
            document = json.loads(raw)
            errcode = int(document.get("errcode", -1))
            errmsg = str(document.get("errmsg", ""))
        except (ValueError, TypeError, AttributeError):
            # A 200 that is not DingTalk's JSON (a proxy page): the message did not go out.
            reason = f"DingTalk's answer is not JSON: {self._snippet(raw)}"
            raise DingTalkError(reason, errcode=200, retryable=True) from None
        if errcode == 0:
            return
        reason = f"DingTalk refused the message: errcode {errcode} {self._snippet(errmsg)}"
        if errcode in HINTS:
            reason += f" ({HINTS[errcode]})"
        retryable = errcode in RETRYABLE
        self.log.warning("chat_refused", errcode=errcode, retryable=retryable)
        raise DingTalkError(
            reason, errcode=errcode, retryable=retryable, retry_after=RETRYABLE.get(errcode)
        )

    def _snippet(self, raw: bytes | str) -> str:
        """The start of a body, on one line, without our token or secret in it."""
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        text = " ".join(text.split())
        for secret in self._secrets:
            text = text.replace(secret, "<redacted>")
        return text[:_SNIPPET]
