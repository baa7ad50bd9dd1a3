"""Polls one gateway account for replies, delivery reports and balance, losing no record.

Reads of getReply and getSendState are taken to be destructive, so each raw answer is stored
before it is parsed, its records are de-duplicated, and the effects are committed together
with the mark that the answer was processed: a crash at any point re-processes, never loses.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import Any

from bridge.events import Event, EventKind
from bridge.intake import conversations
from bridge.intake.pipeline import Pipeline
from bridge.metrics import Metrics
from bridge.outbox import jobs as outbox
from bridge.plugins.c123 import wire
from bridge.plugins.c123.client import C123Client
from bridge.plugins.c123.errors import C123Error
from bridge.plugins.c123.models import Action, DeliveryReport, InboundReply
from bridge.sms import mask_number
from bridge.store import ledger
from bridge.store.sqlite import Store

# Keys of polled records are kept this long, in case the gateway hands a record out again.
KEEP_RECORD_KEYS = 7 * 86400.0
# A non-empty answer may mean more is waiting; ask again, but not forever.
MAX_DRAIN = 20


class GatewayPoller:
    """The one poller of one gateway account (two would steal each other's records)."""

    def __init__(
        self,
        client: C123Client,
        output: str,
        store: Store,
        pipeline: Pipeline,
        *,
        metrics: Metrics,
        log: Any,
        low_balance: Decimal | None = None,
        clock: Callable[[], float] = time.time,
        wake: Callable[[Iterable[str]], None] = lambda outputs: None,
    ) -> None:
        self.client = client
        self.output = output
        self.account = client.config.account
        self.store = store
        self.pipeline = pipeline
        self.metrics = metrics
        self.log = log
        self.low_balance = low_balance
        self.clock = clock
        self.wake = wake
        self.lock = asyncio.Lock()  # one poll at a time; stop() waits for it
        self.problems: dict[str, str] = {}  # action -> why its last poll failed
        self.answered: set[str] = set()  # actions the gateway has answered at least once

    # --- scheduled entry points ------------------------------------------------------------

    async def poll_replies(self) -> None:
        await self._drain(Action.GET_REPLY)

    async def poll_reports(self) -> None:
        await self._drain(Action.GET_SEND_STATE)

    async def poll_balance(self) -> None:
        async with self.lock:
            await self._poll_once(Action.GET_BALANCE)

    async def recover(self) -> int:
        """Process answers stored by a run that stopped before processing them."""
        pending = await self.store.read(ledger.unprocessed_raw)
        for raw_id, account, action, body in pending:
            if account == self.account:
                await self._process(raw_id, Action(action), body)
        return len(pending)

    # --- one poll ----------------------------------------------------------------------------

    async def _drain(self, action: Action) -> None:
        async with self.lock:
            for _ in range(MAX_DRAIN):
                if not await self._poll_once(action):
                    break

    async def _poll_once(self, action: Action) -> int:
        """One call; returns how many records came back (0 on failure)."""
        try:
            body = await self.client.request(action)
        except C123Error as exc:
            self._failed(action, exc)
            return 0
        now = self.clock()
        raw_id = await self.store.write(
            lambda conn: ledger.store_raw(conn, self.account, action.value, body, now)
        )
        return await self._process(raw_id, action, body)

    def _failed(self, action: Action, exc: C123Error) -> None:
        self.problems[action.value] = str(exc)
        self.log.warning(
            "poll_failed", action=action.value, error=type(exc).__name__, detail=str(exc)
        )

    async def _process(self, raw_id: int, action: Action, body: bytes) -> int:
        now = self.clock()
        touched: set[str] = set()
        work: Callable[[sqlite3.Connection], None]
        try:
            if action is Action.GET_REPLY:
                replies = wire.parse_replies(body)
                count = len(replies)
                work = partial(self._replies, replies=replies, now=now, touched=touched)
            elif action is Action.GET_SEND_STATE:
                reports = wire.parse_reports(body)
                count = len(reports)
                work = partial(self._reports, reports=reports, now=now, touched=touched)
            else:
                balance = wire.parse_balance(body).remain
                count = 1
                work = partial(self._balance, balance=balance, now=now, touched=touched)
        except C123Error as exc:
            self._failed(action, exc)
            await self.store.write(lambda conn: ledger.mark_processed(conn, raw_id, now))
            return 0

        def commit(conn: sqlite3.Connection) -> None:
            work(conn)
            ledger.mark_processed(conn, raw_id, now)

        await self.store.write(commit)
        self.problems.pop(action.value, None)
        self.answered.add(action.value)
        self.metrics.last_poll.labels(action.value).set(now)
        self.wake(touched)
        return count

    # --- effects, inside one transaction ------------------------------------------------------

    def _decide(self, conn: sqlite3.Connection, event: Event, now: float, touched: set[str]) -> int:
        decisions = self.pipeline.decide(event, datetime.fromtimestamp(now, UTC))
        self.metrics.events.labels(event.source, event.kind.value).inc()
        for decision in decisions:
            self.metrics.rule_matches.labels(decision.rule).inc()
        return self.pipeline.apply(conn, event, decisions, now, touched)

    def _replies(
        self, conn: sqlite3.Connection, replies: list[InboundReply], now: float, touched: set[str]
    ) -> None:
        for reply in replies:
            digest = hashlib.sha256(reply.content.encode()).hexdigest()
            if not ledger.first_time(conn, f"reply|{reply.mobile}|{reply.raw_time}|{digest}", now):
                continue
            self.metrics.replies.inc()
            open_conversation, routing = self._conversation_for(conn, reply, now)
            original = (
                outbox.get_event(conn, open_conversation.event_id)
                if open_conversation and open_conversation.event_id
                else None
            )
            event = Event(
                kind=EventKind.REPLY,
                source=self.output,
                labels=dict(original.labels) if original else {},
                text=reply.content,
                data={
                    "mobile": reply.mobile,
                    "time": reply.time.isoformat() if reply.time else reply.raw_time,
                    "msgid": reply.msgid,
                    "original": original.to_json() if original else None,
                    "routing": routing,
                },
                fingerprint=digest[:16],
                conversation=(
                    open_conversation.conversation
                    if open_conversation
                    else self.pipeline.conversations.default
                ),
            )
            jobs = self._decide(conn, event, now, touched)
            if jobs:
                self.metrics.replies_forwarded.inc()
            self.log.info(
                "reply_received",
                mobile=mask_number(reply.mobile),
                forwarded=jobs,
                conversation=bool(open_conversation),
            )

    def _conversation_for(
        self, conn: sqlite3.Connection, reply: InboundReply, now: float
    ) -> tuple[conversations.OpenConversation | None, str]:
        """The conversation a reply answers, and how it was found (for logs and templates).

        A code ("#2") picks one; an unknown or expired code goes to the default place, never to
        a guess; no code picks the newest.
        """
        match = conversations.REPLY_CODE.search(reply.content)
        if match and self.pipeline.conversations.reply_codes:
            code = int(match.group(1))
            found = conversations.by_code(conn, reply.mobile, code, now)
            if found is not None:
                return found, f"code #{code}"
            if conversations.latest_conversation(conn, reply.mobile, now) is not None:
                return None, f"unknown or expired code #{code}"
        found = conversations.latest_conversation(conn, reply.mobile, now)
        return found, "newest conversation" if found else "no open conversation"

    def _reports(
        self, conn: sqlite3.Connection, reports: list[DeliveryReport], now: float, touched: set[str]
    ) -> None:
        for report in reports:
            key = f"report|{report.msgid}|{report.mobile}|{report.carrier_code}"
            if not ledger.first_time(conn, key, now):
                continue
            self.metrics.reports.labels(report.carrier_code or "none").inc()
            records = outbox.record_delivery(
                conn, report.msgid, report.mobile, report.status.value, report.carrier_code
            )
            for record in records:
                original = outbox.get_event(conn, record.event_id) if record.event_id else None
                event = Event(
                    kind=EventKind.DELIVERY,
                    source=self.output,
                    labels=dict(original.labels) if original else {},
                    text=f"{report.status.value}: {report.carrier_code}",
                    data={
                        "status": report.status.value,
                        "carrier_code": report.carrier_code,
                        "description": report.description,
                        "mobile": report.mobile,
                        "msgid": report.msgid,
                        "job": record.id,
                        "original": original.to_json() if original else None,
                    },
                    fingerprint=f"{report.msgid}:{report.mobile}",
                    conversation=record.conversation,
                )
                self._decide(conn, event, now, touched)
            self.log.info(
                "delivery_report",
                mobile=mask_number(report.mobile),
                msgid=report.msgid,
                status=report.status.value,
                carrier_code=report.carrier_code,
                jobs=len(records),
            )

    def _balance(
        self, conn: sqlite3.Connection, balance: Decimal, now: float, touched: set[str]
    ) -> None:
        key = f"balance|{self.account}"
        previous_text = ledger.get_setting(conn, key)
        previous = Decimal(previous_text) if previous_text is not None else None
        ledger.put_setting(conn, key, str(balance))
        self.metrics.balance.set(float(balance))
        if previous is not None and balance > previous:
            released = outbox.release_held(conn, self.output, now)
            if released:
                touched.add(self.output)
                self.log.info("balance_topped_up", balance=str(balance), released=released)
        threshold = self.low_balance
        if threshold is None or balance >= threshold:
            return
        if previous is not None and previous < threshold:
            return  # already reported when it crossed
        event = Event(
            kind=EventKind.SYSTEM,
            source=self.output,
            labels={"alertname": "SmsBalanceLow", "account": self.account},
            text=f"SMS balance {balance} is below {threshold}",
            data={"balance": str(balance), "threshold": str(threshold)},
            fingerprint=f"balance-low|{self.account}",
        )
        self.log.warning("balance_low", balance=str(balance), threshold=str(threshold))
        self._decide(conn, event, now, touched)
