"""Async client for every c123 action: validates first, posts forms, returns typed results."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiohttp
import structlog
from pydantic import SecretStr

import bridge.plugins.c123.wire as wire
from bridge.plugin import Limiter
from bridge.plugins.c123.account import AccountGate, PauseHook, ResumeHook
from bridge.plugins.c123.config import C123Config
from bridge.plugins.c123.errors import (
    C123Error,
    ConnectFailedError,
    ConnectionDroppedError,
    ConnectTimeoutError,
    GatewayRefusedError,
    HttpStatusError,
    InvalidRequestError,
    MalformedResponseError,
    ResponseTimeoutError,
    UnknownResultCodeError,
)
from bridge.plugins.c123.keyfile import KeyNotSavedError, probe_writable, write_key
from bridge.plugins.c123.keys import KeySource
from bridge.plugins.c123.marks import Marks
from bridge.plugins.c123.models import (
    Action,
    Balance,
    DeliveryReport,
    InboundReply,
    KeyRotation,
    OutgoingSms,
    PlannedCall,
    SendResult,
)
from bridge.plugins.c123.planning import plan_calls
from bridge.plugins.c123.validation import (
    DEFAULT_LIMITS,
    SEPARATOR,
    Limits,
    check_account,
    check_content,
    check_key,
    check_numbers,
    check_pairs,
    check_params,
    check_schedule,
    render_param,
)
from bridge.sms import segment_count

T = TypeVar("T")
Clock = Callable[[], datetime]
CallObserver = Callable[[Action, str, float], None]  # action, outcome, seconds


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Pacer(Protocol):
    """Waits until the account's rate limit lets the next call go."""

    async def acquire(self) -> None: ...


def burst(rate: float) -> int:
    """The calls a burst may make at once: a second's worth."""
    return max(1, int(rate))


class C123Client:
    """One account on one gateway, over the daemon's shared aiohttp session.

    The key lives only in a SecretStr and in the request body: never in a URL, a log event,
    an exception or this object's repr.
    """

    def __init__(
        self,
        config: C123Config,
        session: aiohttp.ClientSession,
        *,
        authkey: SecretStr | None = None,
        limits: Limits = DEFAULT_LIMITS,
        clock: Clock = _utcnow,
        observe: CallObserver | None = None,
        log: Any = None,
        marks: Marks | None = None,
        on_pause: PauseHook | None = None,
        on_resume: ResumeHook | None = None,
        limiter: Pacer | None = None,
    ) -> None:
        """`limiter` paces calls instead of one kept in this process (instances share it)."""
        self.config = config
        self.limits = limits
        self._session = session
        self._account = check_account(config.account)
        inline = authkey if authkey is not None else config.authkey
        if inline is not None:
            check_key(inline.get_secret_value())
            keys = KeySource(inline=inline)
        else:
            config.load_key()  # a missing or malformed key file is refused here, at once
            keys = KeySource(path=config.authkey_file)
        self._clock = clock
        self._observe = observe
        self._timeout = aiohttp.ClientTimeout(
            total=config.timeout.total.total_seconds(),
            connect=config.timeout.connect.total_seconds(),
        )
        rate = config.rate_limit
        self._limiter: Pacer | None = limiter
        if limiter is None and rate:
            self._limiter = Limiter(rate, burst=burst(rate))
        # Bind once: a lazy proxy would rebuild the logger on every call of a hot path.
        self._log = (log if log is not None else structlog.get_logger("smsbridge.c123")).bind()
        self.gate = AccountGate(
            self._account,
            keys,
            self._prove,
            marks=marks,
            probe_interval=config.probe_interval.total_seconds(),
            log=self._log,
            on_pause=on_pause,
            on_resume=on_resume,
        )

    def __repr__(self) -> str:
        return f"C123Client(base_url={self.config.base_url!r}, account={self._account!r})"

    # --- transport ---------------------------------------------------------------------------

    async def request(self, action: Action, fields: Mapping[str, str] | None = None) -> bytes:
        """POST one action and return the raw body of a successful answer; raises the typed
        error of any other answer, or of none.

        Callers that must store an answer before reading it (destructive reads) use this with
        the `wire.parse_*` functions; everyone else uses the typed methods below.
        """
        return await self._call(action, fields, partial(wire.check_answer, action))

    async def _call(
        self, action: Action, fields: Mapping[str, str] | None, parse: Callable[[bytes], T]
    ) -> T:
        """One call through the account's gate (which may refuse it without calling)."""
        return await self.gate.call(action, partial(self._post, action, fields, parse))

    async def _prove(self, key: SecretStr) -> object:
        """The gate's proof of a key and probe of a paused account: one getBalance."""
        return await self._post(Action.GET_BALANCE, None, wire.parse_balance, key)

    async def _post(
        self,
        action: Action,
        fields: Mapping[str, str] | None,
        parse: Callable[[bytes], T],
        key: SecretStr,
    ) -> T:
        """POST with `key` and read the answer; a failed call is logged, counted by its kind."""
        if self._limiter is not None:
            await self._limiter.acquire()
        started = time.perf_counter()
        result = "transport_error"
        try:
            body, result = await self._exchange(action, fields, key)
            try:
                return parse(body)
            except GatewayRefusedError:
                raise  # an answer the protocol documents
            except UnknownResultCodeError:
                result = "unknown_code"
                raise
            except MalformedResponseError:
                result = "malformed"
                raise
        except C123Error as exc:
            if isinstance(exc, HttpStatusError):
                result = f"http_{exc.status}"
            self._log.warning(
                "gateway_call_failed",
                action=action.value,
                error=type(exc).__name__,
                detail=str(exc),
                retryable=exc.retryable,
                ambiguous=exc.ambiguous,
            )
            raise
        finally:
            if self._observe is not None:
                self._observe(action, result, time.perf_counter() - started)

    async def _exchange(
        self, action: Action, fields: Mapping[str, str] | None, key: SecretStr
    ) -> tuple[bytes, str]:
        """The raw body and its metric label; raises a typed error when no answer came."""
        form = {"action": action.value, "ac": self._account, "authkey": key.get_secret_value()}
        form.update(fields or {})
        url = self.config.base_url + action.path
        try:
            async with self._session.post(url, data=form, timeout=self._timeout) as response:
                body = await response.read()
                if response.status >= 400:
                    raise HttpStatusError(response.status, action=action.value)
                return body, "answered"
        except HttpStatusError:
            raise
        except aiohttp.ConnectionTimeoutError:
            raise ConnectTimeoutError("connect timed out", action=action.value) from None
        except aiohttp.ClientConnectorError as exc:
            raise ConnectFailedError(
                f"cannot connect: {exc.os_error}", action=action.value
            ) from None
        except TimeoutError:
            raise ResponseTimeoutError(
                f"no answer within {self._timeout.total:g} s", action=action.value
            ) from None
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise ConnectionDroppedError(
                f"connection dropped ({type(exc).__name__})", action=action.value
            ) from None

    def _send_fields(self, numbers: Sequence[str], content: str, at: str | None) -> dict[str, str]:
        fields = {"m": ",".join(numbers), "c": content}
        if self.config.channel_group:
            fields["cgid"] = str(self.config.channel_group)
        if self.config.signature.id:
            fields["csid"] = str(self.config.signature.id)
        if at is not None:
            fields["t"] = at
        return fields

    def _schedule(self, at: datetime | None) -> str | None:
        return check_schedule(at, self.config.timezone, self._clock(), self.limits)

    async def _send(self, action: Action, numbers: list[str], fields: dict[str, str]) -> SendResult:
        return await self._call(
            action, fields, partial(wire.parse_send, action, numbers=tuple(numbers))
        )

    # --- sends -------------------------------------------------------------------------------

    def outgoing(
        self,
        number: str,
        text: str,
        field: str = "message",
        *,
        template: str = "",
        params: Mapping[str, str] | None = None,
    ) -> OutgoingSms:
        """One message checked (raises InvalidRequestError naming `field`), with its segment
        count and cost estimate under this account's signature.

        With a `template` (sendParam), `text` must be it rendered with `params`.
        """
        (normalised,) = check_numbers([number], 1, 1, f"{field}.number")
        check_content(text, f"{field}.text", self.limits)
        values: tuple[tuple[str, str], ...] = ()
        if template:
            given = dict(params or {})
            checked = check_params(template, {k: [v] for k, v in given.items()}, 1, self.limits)
            if render_param(template, checked, 0) != text:
                raise InvalidRequestError(f"{field}.text", "is not its template rendered")
            values = tuple((name, items[0]) for name, items in sorted(checked.items()))
        segments = segment_count(text, self.config.signature.text)
        return OutgoingSms(
            normalised, text, segments, self.config.segment_price * segments, template, values
        )

    async def send_once(
        self, numbers: Sequence[str], text: str, *, at: datetime | None = None
    ) -> SendResult:
        """sendOnce: one text to 1..1000 numbers."""
        checked = check_numbers(numbers, 1, self.limits.max_once_numbers)
        check_content(text, "content", self.limits)
        fields = self._send_fields(checked, text, self._schedule(at))
        return await self._send(Action.SEND_ONCE, checked, fields)

    async def send_batch(
        self, pairs: Sequence[tuple[str, str]], *, at: datetime | None = None
    ) -> SendResult:
        """sendBatch: one text per number, 2..100 numbers."""
        checked = check_pairs(pairs, self.limits)
        numbers = [number for number, _ in checked]
        content = SEPARATOR.join(text for _, text in checked)
        fields = self._send_fields(numbers, content, self._schedule(at))
        return await self._send(Action.SEND_BATCH, numbers, fields)

    async def send_param(
        self,
        template: str,
        numbers: Sequence[str],
        params: Mapping[str, Sequence[str]],
        *,
        at: datetime | None = None,
    ) -> SendResult:
        """sendParam: one template with {p1}..{p10} filled per number, 2..100 numbers."""
        checked = check_numbers(
            numbers, self.limits.min_batch_numbers, self.limits.max_batch_numbers, distinct=True
        )
        values = check_params(template, params, len(checked), self.limits)
        for index in range(len(checked)):
            check_content(render_param(template, values, index), f"rendered[{index}]", self.limits)
        fields = self._send_fields(checked, template, self._schedule(at))
        fields.update({name: SEPARATOR.join(items) for name, items in values.items()})
        return await self._send(Action.SEND_PARAM, checked, fields)

    def plan(self, pairs: Sequence[tuple[str, str]]) -> list[PlannedCall]:
        """Validate (number, text) pairs and split them into the fewest calls."""
        return self.plan_checked(
            [
                self.outgoing(number, text, f"messages[{i}]")
                for i, (number, text) in enumerate(pairs)
            ]
        )

    def plan_checked(self, messages: Sequence[OutgoingSms]) -> list[PlannedCall]:
        """Split messages `outgoing` made into the fewest calls."""
        return plan_calls(messages, self.limits)

    async def send_planned(self, call: PlannedCall, *, at: datetime | None = None) -> SendResult:
        """Make one planned call."""
        if call.action is Action.SEND_ONCE:
            return await self.send_once(call.numbers, call.messages[0].text, at=at)
        if call.action is Action.SEND_PARAM:
            first = call.messages[0]
            params = {
                name: [dict(m.params)[name] for m in call.messages] for name, _ in first.params
            }
            return await self.send_param(first.template, call.numbers, params, at=at)
        return await self.send_batch([(m.number, m.text) for m in call.messages], at=at)

    async def send_many(
        self, pairs: Sequence[tuple[str, str]], *, at: datetime | None = None
    ) -> list[tuple[PlannedCall, SendResult | C123Error]]:
        """Send every (number, text) in the fewest calls; one outcome per call, in plan order.

        Calls run one after another: the gateway refuses bursts (-1), and the daemon's
        dispatcher is what paces and retries them.
        """
        outcomes: list[tuple[PlannedCall, SendResult | C123Error]] = []
        for call in self.plan(pairs):
            try:
                outcomes.append((call, await self.send_planned(call, at=at)))
            except C123Error as exc:
                outcomes.append((call, exc))
        return outcomes

    # --- reads -------------------------------------------------------------------------------

    async def get_send_state(self) -> list[DeliveryReport]:
        """Delivery reports the gateway has not handed out before (it hands each out once)."""
        return await self._call(Action.GET_SEND_STATE, None, wire.parse_reports)

    async def get_reply(self) -> list[InboundReply]:
        """Replies the gateway has not handed out before (it hands each out once)."""
        return await self._call(Action.GET_REPLY, None, wire.parse_replies)

    async def get_balance(self) -> Balance:
        """The account's balance in yuan."""
        return await self._call(Action.GET_BALANCE, None, wire.parse_balance)

    async def update_key(self, key_file: Path) -> KeyRotation:
        """Rotate the key: the new one is in `key_file` (0600, fsynced) before this returns.

        The old key dies when the gateway answers, so the write happens before anything else;
        if it fails, the exception says so and the new key is in no log.
        """
        # Prove the file can be written before the gateway forgets the old key.
        await asyncio.to_thread(probe_writable, key_file)
        rotation = await self._call(Action.UPDATE_KEY, None, wire.parse_key_rotation)
        try:
            await asyncio.to_thread(write_key, key_file, rotation.authkey)
        except OSError as exc:
            raise KeyNotSavedError(key_file, exc, SecretStr(rotation.authkey)) from None
        self.gate.adopt(SecretStr(rotation.authkey))
        self._log.warning("gateway_key_rotated", key_file=str(key_file))
        return rotation

    @property
    def price(self) -> Decimal:
        return self.config.segment_price
