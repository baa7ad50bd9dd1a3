"""The `mattermost` output: REST API posts as a bot, in threads (root_id), or a webhook."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

import aiohttp

from bridge.plugin import ChatApiError, ChatOutput, PluginContext, retry_after
from bridge.plugins.mattermost.config import MattermostOutputConfig

INVALID_ROOT = "api.post.create_post.root_id.app_error"
# Mattermost refuses @channel/@all/@here notifications from a post with this prop: an SMS
# reply saying "@all" must not page the whole channel.
PROPS = {"disable_group_highlight": True}
_ERROR_ID = re.compile(r"[A-Za-z0-9_.]{1,120}")
_ROOTS_KEPT = 1024
_MAX_ANSWER = 1024 * 1024  # bytes of an answer read; a post's JSON is a few KiB


class _InvalidRootError(Exception):
    """The thread id is not a root post (a reply, or gone): Mattermost refuses root_id."""


class MattermostOutput(ChatOutput[MattermostOutputConfig]):
    """Posts into a Mattermost channel, in the thread when the job has one.

    The thread may be a reply's id (outgoing webhooks name the post, not its root): when
    Mattermost refuses it as root_id, the post's root is looked up once and remembered; when
    the thread is gone, the message goes to the channel rather than nowhere.
    """

    type_name = "mattermost"
    config_class = MattermostOutputConfig
    max_chars = 16383  # a post's limit since Mattermost 5.0 (protocols.md §3.2)

    def __init__(self, config: MattermostOutputConfig, ctx: PluginContext) -> None:
        super().__init__(config, ctx)
        self._timeout = aiohttp.ClientTimeout(total=config.timeout.total_seconds())
        self._roots: dict[str, str] = {}  # thread id as given -> the root post to use

    def _secret(self) -> str:
        secret = self.config.token or self.config.webhook_url
        assert secret is not None  # guaranteed by MattermostOutputConfig
        return secret.get_secret_value()

    async def post(self, channel: str, thread: str, text: str) -> str:
        if self.config.webhook_url is not None:
            document = {"text": text, "props": PROPS}
            await self._request("POST", self.config.webhook_url.get_secret_value(), document)
            return ""  # webhooks give no post id
        if not channel:
            raise ChatApiError("no channel: the job has none and the output's channel is unset")
        root = self._roots.get(thread, thread)
        try:
            return await self._create(channel, root, text, resolve=root == thread)
        except _InvalidRootError:
            root = await self._root_of(thread)
            self._remember(thread, root)
            return await self._create(channel, root, text, resolve=False)

    async def _create(self, channel: str, root: str, text: str, *, resolve: bool) -> str:
        document = {"channel_id": channel, "message": text, "root_id": root, "props": PROPS}
        try:
            created = await self._request("POST", self._api("posts"), document)
        except ChatApiError as exc:
            if resolve and root and exc.status == 400 and INVALID_ROOT in exc.reason:
                raise _InvalidRootError from exc
            raise
        return str(created.get("id", "")) if isinstance(created, dict) else ""

    async def _root_of(self, post_id: str) -> str:
        """The root of the thread `post_id` is in; '' when the post is gone or hidden."""
        try:
            found = await self._request("GET", self._api(f"posts/{quote(post_id, safe='')}"))
        except ChatApiError as exc:
            if exc.status in (403, 404):
                self.log.warning("thread_missing", thread=post_id, status=exc.status)
                return ""
            raise
        root = found.get("root_id") if isinstance(found, dict) else None
        return root if isinstance(root, str) and root else post_id

    def _remember(self, thread: str, root: str) -> None:
        self._roots[thread] = root
        if len(self._roots) > _ROOTS_KEPT:
            del self._roots[next(iter(self._roots))]  # the oldest: dicts keep insertion order

    def _api(self, path: str) -> str:
        return f"{self.config.server_url}/api/v4/{path}"

    async def _request(self, method: str, url: str, document: Any = None) -> Any:
        """One API call; the parsed JSON answer, or ChatApiError saying why it was refused."""
        headers = {"Accept": "application/json"}
        if self.config.token is not None:
            headers["Authorization"] = f"Bearer {self.config.token.get_secret_value()}"
        body = None
        if document is not None:
            body = json.dumps(document, ensure_ascii=False).encode()
            headers["Content-Type"] = "application/json"
        async with self.ctx.http.request(
            method,
            url,
            data=body,
            headers=headers,
            timeout=self._timeout,
            allow_redirects=False,
        ) as response:
            raw = await response.content.read(_MAX_ANSWER)
            if 200 <= response.status < 300:
                try:
                    return json.loads(raw)
                except ValueError:
                    return None  # webhooks answer "ok"
            raise self._refusal(response, raw)

    def _refusal(self, response: aiohttp.ClientResponse, raw: bytes) -> ChatApiError:
        """Mattermost's error answer ({"id", "message", ...}) as a reason with no secrets."""
        try:
            error = json.loads(raw)
        except ValueError:
            error = None
        error = error if isinstance(error, dict) else {}
        ident = error.get("id")
        ident = ident if isinstance(ident, str) and _ERROR_ID.fullmatch(ident) else ""
        message = error.get("message")
        message = " ".join(message.split())[:200] if isinstance(message, str) else ""
        message = message.replace(self._secret(), "<redacted>")
        reason = f"Mattermost refused the post: HTTP {response.status}"
        reason += f" {ident}" if ident else ""
        reason += f" ({message})" if message else ""
        after = retry_after(response.headers.get("Retry-After")) or retry_after(
            response.headers.get("X-Ratelimit-Reset")
        )
        self.log.warning("mattermost_post_refused", status=response.status, error=ident)
        return ChatApiError(
            reason, status=response.status, retry_after=after if response.status == 429 else None
        )
