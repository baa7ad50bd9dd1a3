"""The c123 reply source: polls one account for replies, delivery reports and balance.

Reads of getReply and getSendState are taken to be destructive, so each answer is handed to the
core's record sink, which stores the raw answer and its records (in bounded chunks) in one
commit before anything is done with them: a crash at any point re-processes, never loses.

With several instances on one database only the holder of the account's lease polls. A call
starts only while the lease is surely held and is abandoned when that time runs out, so two
instances never have a read in flight at once; the sink checks the lease's token in the
transaction that keeps the answer, so an answer that comes back after a takeover (a paused or
cut-off process) is never stored or acted on.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any, Protocol

import bridge.plugins.c123.wire as wire
from bridge.events import ReplyRecord, ReportRecord
from bridge.plugin import RecordSink
from bridge.plugins.c123.client import C123Client
from bridge.plugins.c123.errors import C123Error
from bridge.plugins.c123.models import Action, DeliveryReport, InboundReply
from bridge.store import LeaseLostError

# A non-empty answer may mean more is waiting; ask again, but not forever.
MAX_DRAIN = 20
# After a read given up at the lease's end, no read for this long: the gateway may still be
# answering the one given up, and a second read at once would overlap it.
ABANDONED_PAUSE = 1.0


def reply_record(reply: InboundReply) -> ReplyRecord:
    return ReplyRecord(
        mobile=reply.mobile,
        text=reply.content,
        time=reply.time.isoformat() if reply.time else reply.raw_time,
        raw_time=reply.raw_time,
        ref=reply.msgid,
    )


def report_record(report: DeliveryReport) -> ReportRecord:
    return ReportRecord(
        ref=report.msgid,
        mobile=report.mobile,
        status=report.status.value,
        carrier_code=report.carrier_code,
        description=report.description,
    )


def _replies(body: bytes) -> list[ReplyRecord]:
    return [reply_record(reply) for reply in wire.parse_replies(body)]


def _reports(body: bytes) -> list[ReportRecord]:
    return [report_record(report) for report in wire.parse_reports(body)]


class Lease(Protocol):
    """The account's lease as the poller sees it."""

    def remaining(self) -> float:
        """Seconds it is surely still held here (0: not held)."""
        ...


class GatewayPoller:
    """The one poller of one gateway account (two would steal each other's records)."""

    def __init__(
        self,
        client: C123Client,
        source: str,
        sink: RecordSink,
        *,
        log: Any,
        low_balance: Decimal | None = None,
        on_poll: Any = None,
        lease: Lease | None = None,
    ) -> None:
        self.client = client
        self.source = source  # the output's name: replies and reports are about its messages
        self.sink = sink
        self.log = log
        self.low_balance = low_balance
        self.on_poll = on_poll  # called with the action after each successful poll
        self.lock = asyncio.Lock()  # one poll at a time; stop() waits for it
        self.problems: dict[str, str] = {}  # action -> why its last poll failed
        self.answered: set[str] = set()  # actions the gateway has answered at least once
        self.lease = lease  # None: the only instance (SQLite), always polls
        self.fenced = 0  # answers refused by the lease check: another instance took over
        self._quiet_until = 0.0  # monotonic: no read before (one was given up)

    # --- scheduled entry points ------------------------------------------------------------

    async def poll_replies(self) -> None:
        await self._drain(Action.GET_REPLY)

    async def poll_reports(self) -> None:
        await self._drain(Action.GET_SEND_STATE)

    async def poll_balance(self) -> None:
        async with self.lock:
            await self._poll_once(Action.GET_BALANCE)

    async def replay(self, action: str, body: bytes) -> None:
        """Hand over an answer an earlier version stored but did not process."""
        try:
            await self._hand_over(Action(action), body)
        except (C123Error, ValueError) as exc:
            self.log.warning("poll_replay_failed", action=action, error=type(exc).__name__)

    # --- one poll ----------------------------------------------------------------------------

    async def _drain(self, action: Action) -> None:
        async with self.lock:
            for _ in range(MAX_DRAIN):
                if not await self._poll_once(action):
                    break

    async def _poll_once(self, action: Action) -> int:
        """One call; returns how many records came back (0 on failure or without the lease)."""
        left = None if self.lease is None else self.lease.remaining()
        if (left is not None and left <= 0) or time.monotonic() < self._quiet_until:
            return 0  # another instance polls this account, or a read was just given up
        try:
            async with asyncio.timeout(left):
                body = await self.client.request(action)
        except TimeoutError:
            # The lease may pass to another instance now: its read must not overlap this one.
            self._quiet_until = time.monotonic() + ABANDONED_PAUSE
            self.log.warning("poll_abandoned", action=action.value, reason="lease ending")
            return 0
        except C123Error as exc:
            self._failed(action, exc)
            return 0
        try:
            count = await self._hand_over(action, body)
        except LeaseLostError:
            self.fenced += 1
            self.log.warning("poll_answer_fenced", action=action.value, source=self.source)
            return 0
        except C123Error as exc:
            # The answer did not parse: keep it anyway, so a person can look at what came.
            await self.sink.received(self.source, action.value, body)
            self._failed(action, exc)
            return 0
        self.problems.pop(action.value, None)
        self.answered.add(action.value)
        if self.on_poll is not None:
            self.on_poll(action.value)
        return count

    async def _hand_over(self, action: Action, body: bytes) -> int:
        # A large answer (20,000 reports) takes the XML parser a while: off the event loop,
        # so webhooks are answered meanwhile.
        if action is Action.GET_REPLY:
            replies = await asyncio.to_thread(_replies, body)
            await self.sink.received(self.source, action.value, body, replies=replies)
            return len(replies)
        if action is Action.GET_SEND_STATE:
            reports = await asyncio.to_thread(_reports, body)
            await self.sink.received(self.source, action.value, body, reports=reports)
            return len(reports)
        balance = wire.parse_balance(body).remain
        await self.sink.balance(self.source, body, balance, self.low_balance)
        return 1

    def _failed(self, action: Action, exc: C123Error) -> None:
        self.problems[action.value] = str(exc)
        self.log.warning(
            "poll_failed", action=action.value, error=type(exc).__name__, detail=str(exc)
        )
