"""The simulated c123 gateway's state and rules, pure Python: accounts, billing, reports."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

import structlog

from bridge.plugin import TokenBucket
from bridge.plugins.c123.models import CARRIER_CODES, Action, DeliveryStatus
from bridge.plugins.c123.simulator.config import Fault, InvalidInput, SimAccount, SimulatorSettings
from bridge.plugins.c123.simulator.sends import BadParameters, is_bare_number, plan_send
from bridge.plugins.c123.simulator.timing import Clock, Monotonic, utcnow
from bridge.plugins.c123.simulator.wire import (
    Answer,
    BalanceRow,
    KeyRow,
    Reply,
    Report,
    Row,
    SentRow,
)
from bridge.plugins.c123.validation import is_xml_text
from bridge.sms import mask_number, segment_count

log = structlog.get_logger()

# Ids start near the provider's published example and stay above 2**53 (JSON numbers lose them).
FIRST_MSGID = 158830675912720700
_ACCOUNT_FORM = re.compile(r"[^@]+@[^@]+")
_POLL_SECONDS = 0.05
_READS = frozenset((Action.GET_REPLY.value, Action.GET_SEND_STATE.value))


@dataclass(frozen=True, slots=True)
class SimMessage:
    """One accepted message to one number, as the gateway recorded and billed it."""

    msgid: str
    mobile: str
    content: str
    segments: int
    price: Decimal
    submitted_at: datetime
    scheduled_for: datetime | None
    action: Action
    account: str


@dataclass(eq=False, slots=True)
class AccountState:
    """An account's live state: key, balance, flags and what is waiting to be fetched."""

    config: SimAccount
    authkey: str
    balance: Decimal
    key_locked: bool
    account_locked: bool
    api_disabled: bool
    bucket: TokenBucket | None
    failed_keys: int = 0  # wrong keys in a row (they lock the key)
    wrong_key_calls: int = 0  # every call refused for a wrong key, ever
    in_flight: int = 0  # calls being answered right now
    max_in_flight: int = 0  # the most calls ever answered at once
    # getReply / getSendState calls being answered now, and the most ever at once: reads are
    # destructive, so more than one at a time means two pollers are stealing each other's records.
    reads_in_flight: int = 0
    max_reads_in_flight: int = 0
    reports: list[Report] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)
    last_msgid: dict[str, str] = field(default_factory=dict)

    def signature(self, csid: str) -> str:
        """The signature the gateway appends for a csid; the default one for absent or unknown."""
        signatures = self.config.signatures
        return signatures.get(_id(csid), signatures.get(0, ""))


def key_digest(key: str) -> str:
    """How the simulator counts calls by key without keeping the key: its SHA-256."""
    return hashlib.sha256(key.encode()).hexdigest()


def _id(text: str) -> int:
    # Ids are short runs of ASCII digits; int() would also take "٨٠" or " 80", and raise on
    # thousands of digits, so anything else matches no id.
    return int(text) if len(text) <= 18 and text.isascii() and text.isdigit() else -1


class _Refused(Exception):  # noqa: N818 - control flow, never leaves this module
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class GatewayState:
    """Everything the simulated gateway knows, and the rules it answers calls by."""

    def __init__(
        self,
        settings: SimulatorSettings | None = None,
        *,
        clock: Clock | None = None,
        monotonic: Monotonic | None = None,
    ) -> None:
        self.settings = settings or SimulatorSettings()
        self.clock = clock or utcnow
        self.monotonic = monotonic or time.monotonic
        self._next_msgid = FIRST_MSGID
        self._changed = asyncio.Event()
        self.accounts: dict[str, AccountState] = {}
        self.messages: list[SimMessage] = []
        self.calls: Counter[str] = Counter()
        self.calls_by_key: Counter[str] = Counter()  # by key_digest() of the key sent
        self.faults: list[Fault] = []
        self.carrier_codes: dict[str, str] = {}
        self.reset()

    def reset(self) -> None:
        """Back to the settings' state; message ids keep increasing so they stay unique."""
        rate, burst, now = self.settings.rate_limit, self.settings.rate_burst, self.monotonic()
        self.accounts = {
            config.ac: AccountState(
                config=config,
                authkey=config.authkey,
                balance=config.balance,
                key_locked=config.key_locked,
                account_locked=config.account_locked,
                api_disabled=config.api_disabled,
                bucket=TokenBucket(rate, burst, now) if rate else None,
            )
            for config in self.settings.accounts
        }
        self.messages = []
        self.calls = Counter()
        self.calls_by_key = Counter()
        self.faults = []
        self.carrier_codes = dict(self.settings.carrier_codes)
        self._notify()

    def account(self, ac: str | None = None) -> AccountState:
        """An account by name; the first configured one when None."""
        if ac is None:
            return next(iter(self.accounts.values()))
        try:
            return self.accounts[ac]
        except KeyError:
            raise InvalidInput("account", f"no account {ac!r}") from None

    # --- the gateway -------------------------------------------------------------------------

    def count_call(self, action: str) -> None:
        """Count one request that reached a gateway endpoint, whatever becomes of it."""
        self.calls[action] += 1
        self._notify()

    @contextlib.contextmanager
    def answering(self, params: Mapping[str, str]) -> Iterator[None]:
        """Count a call by the key it carries, and as in flight (per account) while it lasts."""
        self.calls_by_key[key_digest(params.get("authkey", ""))] += 1
        account = self.accounts.get(params.get("ac", ""))
        read = params.get("action", "") in _READS
        if account is not None:
            account.in_flight += 1
            account.max_in_flight = max(account.max_in_flight, account.in_flight)
            if read:
                account.reads_in_flight += 1
                account.max_reads_in_flight = max(
                    account.max_reads_in_flight, account.reads_in_flight
                )
        self._notify()
        try:
            yield
        finally:
            if account is not None:
                account.in_flight -= 1
                if read:
                    account.reads_in_flight -= 1
            self._notify()

    def take_fault(self, action: Action) -> Fault | None:
        """The first queued fault for this action, used up by this call."""
        for index, fault in enumerate(self.faults):
            if fault.action is None or fault.action is action:
                fault.count -= 1
                if fault.count <= 0:
                    del self.faults[index]
                self._notify()
                return fault
        return None

    def handle(self, action: Action, params: Mapping[str, str]) -> Answer:
        """Answer one call as the gateway would; a refused send changes no balance or record."""
        try:
            account = self._authorise(params)
            rows = self._perform(account, action, params)
        except _Refused as refusal:
            log.debug(
                "simulator_refused",
                action=action.value,
                account=params.get("ac", ""),
                result=refusal.code,
                reason=refusal.reason,
            )
            return Answer(action, refusal.code)
        finally:
            self._notify()
        return Answer(action, 1, rows)

    def _authorise(self, params: Mapping[str, str]) -> AccountState:
        ac = params.get("ac", "")
        if not _ACCOUNT_FORM.fullmatch(ac):
            raise _Refused(0, "account is not employee@enterprise")
        account = self.accounts.get(ac)
        if account is None:
            raise _Refused(-5, "no such account")
        if account.key_locked:
            raise _Refused(-3, "key locked")
        key = params.get("authkey", "").encode()
        if not hmac.compare_digest(key, account.authkey.encode()):
            account.failed_keys += 1
            account.wrong_key_calls += 1
            if account.failed_keys >= self.settings.key_lock_after:
                account.key_locked = True
                log.warning("simulator_key_locked", account=ac, attempts=account.failed_keys)
            raise _Refused(-2, "wrong key")
        account.failed_keys = 0
        if account.account_locked:
            raise _Refused(-6, "account locked")
        if account.api_disabled:
            raise _Refused(-7, "API disabled")
        if account.bucket is not None and not account.bucket.take(self.monotonic()):
            raise _Refused(-1, "rate limit")
        return account

    def _perform(
        self, account: AccountState, action: Action, params: Mapping[str, str]
    ) -> tuple[Row, ...]:
        config = account.config
        if action.is_send:
            return self._send(account, action, params)
        if action is Action.GET_SEND_STATE:
            now = self.clock()
            due = sorted((r for r in account.reports if r.due_at <= now), key=lambda r: r.due_at)
            account.reports = [r for r in account.reports if r.due_at > now]
            return tuple(due)
        if action is Action.GET_REPLY:
            replies, account.replies = account.replies, []
            return tuple(replies)
        if action is Action.GET_BALANCE:
            return (BalanceRow(config.enterprise_id, config.employee_id, account.balance),)
        account.authkey = secrets.token_hex(16).upper()
        log.info("simulator_key_rotated", account=config.ac)
        return (KeyRow(config.enterprise_id, config.employee_id, account.authkey),)

    def _send(
        self, account: AccountState, action: Action, params: Mapping[str, str]
    ) -> tuple[Row, ...]:
        config = account.config
        cgid = params.get("cgid", "")
        if cgid and config.channel_groups is not None and _id(cgid) not in config.channel_groups:
            raise _Refused(-8, "channel group not allowed")
        now = self.clock()
        try:
            plan = plan_send(
                action,
                params,
                now=now,
                tz=config.zone,
                max_once_numbers=self.settings.max_once_numbers,
            )
        except BadParameters as bad:
            raise _Refused(-4, bad.reason) from None
        signature = account.signature(params.get("csid", ""))
        segments = [segment_count(m.content, signature) for m in plan.messages]
        price = config.price
        if account.balance < price * sum(segments):
            raise _Refused(-9, "balance too low")

        once = action is Action.SEND_ONCE
        shared_msgid = self._new_msgid() if once else ""
        rows: list[SentRow] = []
        for message, count in zip(plan.messages, segments, strict=True):
            msgid = shared_msgid or self._new_msgid()
            account.balance -= price * count
            self.messages.append(
                SimMessage(
                    msgid=msgid,
                    mobile=message.mobile,
                    content=message.content,
                    segments=count,
                    price=price,
                    submitted_at=now,
                    scheduled_for=plan.scheduled_for,
                    action=action,
                    account=config.ac,
                )
            )
            account.last_msgid[message.mobile] = msgid
            account.reports.append(self._report(msgid, message.mobile, plan.scheduled_for or now))
            rows.append(
                SentRow(
                    config.enterprise_id, config.employee_id, msgid, count, price, account.balance
                )
            )
        if once:
            # One Item for the whole task: its msgid, every number's segments, the final balance.
            rows = [replace(rows[-1], total=sum(segments))]
        mobiles = [m.mobile for m in plan.messages]
        log.debug(
            "simulator_sent",
            action=action.value,
            account=config.ac,
            count=len(mobiles),
            mobiles=[mask_number(mobile) for mobile in mobiles[:5]],
            segments=sum(segments),
            scheduled=plan.scheduled_for is not None,
        )
        return tuple(rows)

    def _new_msgid(self) -> str:
        msgid = str(self._next_msgid)
        self._next_msgid += 1
        return msgid

    def _report(self, msgid: str, mobile: str, sent_at: datetime) -> Report:
        code = self.carrier_codes.get(mobile, "DELIVRD")
        known = CARRIER_CODES.get(code)
        status = known[0] if known else DeliveryStatus.FAILED
        if status is DeliveryStatus.DELIVERED:
            result = 0 if self.settings.zero_result_quirk else 2
        else:
            result = 1 if status is DeliveryStatus.FAILED else 0
        due_at = sent_at + timedelta(seconds=self.settings.report_delay)
        return Report(msgid, mobile, code, result, due_at)

    # --- what tests and operators change ----------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        """Queue a fault; faults apply in the order queued, one per matching call."""
        self.faults.append(fault)
        self._notify()

    def clear_faults(self) -> int:
        """Drop every queued fault; returns how many were dropped."""
        dropped = len(self.faults)
        self.faults = []
        self._notify()
        return dropped

    def inject_reply(
        self,
        mobile: str,
        content: str,
        *,
        time: datetime | None = None,
        account: str | None = None,
    ) -> Reply:
        """Queue an inbound SMS for the next getReply of the account."""
        target = self.account(account)
        if not mobile or not is_xml_text(mobile):
            raise InvalidInput("mobile", "must be a non-empty text of XML characters")
        if not is_xml_text(content):
            raise InvalidInput("content", "contains characters XML 1.0 cannot carry")
        if time is not None and time.tzinfo is None:
            raise InvalidInput("time", "must carry a time zone")
        reply = Reply(mobile, content, time or self.clock(), target.last_msgid.get(mobile))
        target.replies.append(reply)
        self._notify()
        return reply

    def set_balance(
        self,
        *,
        remain: Decimal | None = None,
        add: Decimal | None = None,
        account: str | None = None,
    ) -> Decimal:
        """Set the balance or add to it (a top-up); returns the new balance."""
        target = self.account(account)
        if remain is not None and add is None:
            name, balance = "remain", remain
        elif add is not None and remain is None:
            name, balance = "add", target.balance + add
        else:
            raise InvalidInput("remain", "give exactly one of remain and add")
        if not balance.is_finite():
            raise InvalidInput(name, "must be a finite amount")
        if balance < 0:
            raise InvalidInput(name, "the balance cannot go below zero")
        target.balance = balance
        self._notify()
        return balance

    def set_carrier_codes(self, codes: Mapping[str, str | None]) -> dict[str, str]:
        """Override the carrier code reported for numbers (None restores DELIVRD)."""
        for mobile, code in codes.items():
            if not is_bare_number(mobile):
                raise InvalidInput(mobile, "not an 11-digit mobile number starting with 1")
            if code is not None and (not code.strip() or not is_xml_text(code)):
                raise InvalidInput(mobile, "the carrier code must be a non-empty text")
        for mobile, code in codes.items():
            if code is None:
                self.carrier_codes.pop(mobile, None)
            else:
                self.carrier_codes[mobile] = code
        self._notify()
        return dict(self.carrier_codes)

    def set_flags(
        self,
        ac: str,
        *,
        key_locked: bool | None = None,
        account_locked: bool | None = None,
        api_disabled: bool | None = None,
    ) -> AccountState:
        """Lock or unlock the key or the account, or switch API sending off or on."""
        target = self.account(ac)
        if key_locked is not None:
            target.key_locked = key_locked
            target.failed_keys = 0
        if account_locked is not None:
            target.account_locked = account_locked
        if api_disabled is not None:
            target.api_disabled = api_disabled
        self._notify()
        return target

    # --- waiting without sleeping ------------------------------------------------------------

    async def wait_for(
        self,
        predicate: Callable[[GatewayState], bool],
        timeout: float = 5.0,  # noqa: ASYNC109 - a deadline for a predicate, like asyncio.wait_for
    ) -> None:
        """Return once predicate(state) holds; raise TimeoutError after timeout seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate(self):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"simulator state did not match within {timeout} s")
            # Woken on every change; the short cap also catches predicates on the clock alone.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, _POLL_SECONDS))

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
