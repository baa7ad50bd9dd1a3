"""The `http_callback` output: one signed JSON POST per job.

Each request carries:

    Content-Type: application/json
    User-Agent: smsbridge/<version>
    X-Smsbridge-Timestamp: <unix seconds>
    X-Smsbridge-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>

and the body `{"text": ..., "recipient": ..., "job_id": ..., <the job's payload>}` (the core puts
the event there: kind, labels, status, conversation...). A receiver recomputes the signature over
the raw bytes before parsing, compares it with `hmac.compare_digest`, and refuses a timestamp more
than 5 minutes from its clock (`bridge.plugins.http_callback.signing.verify` does exactly this).

Delivery is at least once: a 5xx, 429, timeout or a connection dropped after the body went out
is retried, so the same job may arrive twice. Receivers must be idempotent by `job_id`.
Outcomes: 2xx sent (ref = X-Request-Id), 408/429/5xx and network trouble retry, other 3xx/4xx
failed. Reasons never contain the secret or the URL (which may hold a token).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from bridge import __version__
from bridge.plugin import Job, Outcome, OutcomeKind, Output, PluginContext, retry_after
from bridge.plugins.http_callback.config import HttpCallbackConfig
from bridge.plugins.http_callback.signing import sign

TIMESTAMP_HEADER = "X-Smsbridge-Timestamp"
SIGNATURE_HEADER = "X-Smsbridge-Signature"
USER_AGENT = f"smsbridge/{__version__}"
# The job's own fields win over payload keys of the same name: job_id is the idempotency key.
OWN_FIELDS = frozenset({"text", "recipient", "job_id"})
_SNIPPET = 200  # characters of a refusal's body kept in the reason


def document(job: Job) -> dict[str, Any]:
    """The JSON document posted for a job."""
    extra = {key: value for key, value in job.payload.items() if key not in OWN_FIELDS}
    return {"text": job.text, "recipient": job.recipient, "job_id": job.id, **extra}


class HttpCallbackOutput(Output[HttpCallbackConfig]):
    """POSTs each job, signed, to one URL."""

    type_name = "http_callback"
    config_class = HttpCallbackConfig

    def __init__(self, config: HttpCallbackConfig, ctx: PluginContext) -> None:
        super().__init__(config, ctx)
        self._secret: bytes | None = None

    async def start(self) -> None:
        self._key()  # a missing or empty secret_file fails start-up, not the first delivery

    def _key(self) -> bytes:
        if self._secret is None:
            if self.config.secret is not None:
                secret = self.config.secret.get_secret_value()
            else:
                assert self.config.secret_file is not None  # guaranteed by the config model
                secret = self.config.secret_file.read_text(encoding="utf-8").strip()
                if not secret:
                    raise ValueError(f"secret_file {self.config.secret_file} is empty")
            self._secret = secret.encode()
        return self._secret

    async def deliver(self, jobs: Sequence[Job]) -> list[Outcome]:
        # Jobs are independent requests: one slow receiver answer must not hold up the others.
        return list(await asyncio.gather(*(self._deliver(job) for job in jobs)))

    async def _deliver(self, job: Job) -> Outcome:
        try:
            body = json.dumps(
                document(job), ensure_ascii=False, separators=(",", ":"), allow_nan=False
            ).encode()
        except (TypeError, ValueError):
            return self._done(job, OutcomeKind.FAILED, "the job's payload is not JSON", "payload")
        timestamp = int(time.time())
        headers = {
            **self.config.headers,
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self._key(), timestamp, body),
        }
        seconds = self.config.timeout.total_seconds()
        try:
            async with self.ctx.http.post(
                self.config.url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=seconds),
                # Following a redirect would send a signed body somewhere not configured.
                allow_redirects=False,
            ) as response:
                return await self._answered(job, response)
        except TimeoutError:
            return self._done(job, OutcomeKind.RETRY, f"no answer within {seconds:g}s", "timeout")
        except aiohttp.ClientConnectorError as exc:
            cause = exc.os_error.strerror or type(exc).__name__
            reason = f"cannot connect to the receiver: {cause}"
            return self._done(job, OutcomeKind.RETRY, reason, "connect")
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientOSError):
            # The body may have arrived; retrying is safe only because receivers dedupe job_id.
            reason = "the connection was dropped before the receiver answered"
            return self._done(job, OutcomeKind.RETRY, reason, "disconnected")
        except aiohttp.ClientError as exc:
            reason = f"the request failed ({type(exc).__name__})"
            return self._done(job, OutcomeKind.RETRY, reason, "client_error")

    async def _answered(self, job: Job, response: aiohttp.ClientResponse) -> Outcome:
        status = response.status
        if 200 <= status < 300:
            ref = response.headers.get("X-Request-Id", "")[:200]
            self.log.info("callback_sent", job_id=job.id, status=status)
            return Outcome(job.id, OutcomeKind.SENT, ref=ref)
        reason = f"the receiver answered HTTP {status} {response.reason or ''}".rstrip()
        snippet = await self._snippet(response)
        if snippet:
            reason += f": {snippet}"
        if status in (408, 429) or status >= 500:
            after = retry_after(response.headers.get("Retry-After"))
            return self._done(job, OutcomeKind.RETRY, reason, str(status), after)
        if 300 <= status < 400:
            reason += " (redirects are not followed; configure the final URL)"
        return self._done(job, OutcomeKind.FAILED, reason, str(status))

    async def _snippet(self, response: aiohttp.ClientResponse) -> str:
        """The start of a refusal's body, on one line, with the secret blanked out."""
        try:
            raw = await response.content.read(_SNIPPET * 4)
        except (aiohttp.ClientError, TimeoutError):
            return ""
        text = " ".join(raw.decode("utf-8", "replace").split())
        secret = self._key().decode()
        # A receiver that echoes the shared secret back must not put it in our outcomes and logs.
        return text.replace(secret, "<redacted>")[:_SNIPPET]

    def _done(
        self,
        job: Job,
        kind: OutcomeKind,
        reason: str,
        code: str,
        after: float | None = None,
    ) -> Outcome:
        self.log.warning("callback_not_sent", job_id=job.id, outcome=kind.value, code=code)
        return Outcome(job.id, kind, reason, retry_after=after, code=code)
