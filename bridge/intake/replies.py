"""Replies and delivery reports a reply source polled: stored in chunks, then turned into events.

A reply source (the c123 poller) hands over what one destructive read returned: the raw
answer is kept, and its records are cut into inbox chunks in the same transaction, so nothing
read is ever lost and no transaction is larger than one chunk. The processor then runs each
chunk here: records are de-duplicated, matched to the conversation or job they belong to, and
become `reply` / `delivery` events for the rules.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import bridge.intake.conversations as conversations
import bridge.intake.inbox as inbox
from bridge.events import Event, EventKind, ReplyRecord, ReportRecord
from bridge.intake.inbox import InboxKind
from bridge.intake.pipeline import Pipeline
from bridge.metrics import Metrics, carrier_code_label
from bridge.outbox import jobs
from bridge.sms import mask_number
from bridge.store import Connection, Store, ledger

# Records per inbox chunk: a 20,000-report answer becomes 200 short transactions, not one long one.
CHUNK = 100


class RecordIntake:
    """The core side of reply sources: keeps what they read, and makes events of it."""

    def __init__(
        self,
        store: Store,
        pipeline: Pipeline,
        *,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
        stored: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.pipeline = pipeline
        self.metrics = metrics
        self.clock = clock
        self.stored = stored  # wakes the processor
        # source -> a check run first in each transaction that keeps a read (a poller's lease)
        self.fences: dict[str, Callable[[Connection], None]] = {}

    # --- what a reply source calls -----------------------------------------------------------

    async def received(
        self,
        source: str,
        action: str,
        raw: bytes,
        replies: Sequence[ReplyRecord] = (),
        reports: Sequence[ReportRecord] = (),
    ) -> None:
        """Keep one read's raw answer and its records (as chunks), in one commit."""
        # Encoding thousands of records takes a while: off the event loop, before the commit.
        chunks = [(InboxKind.REPLIES, body) for body in await asyncio.to_thread(_chunks, replies)]
        chunks += [(InboxKind.REPORTS, body) for body in await asyncio.to_thread(_chunks, reports)]
        now = self.clock()

        fence = self.fences.get(source)

        def work(conn: Connection) -> None:
            if fence is not None:
                fence(conn)
            raw_id = ledger.store_raw(conn, source, action, raw, now)
            for kind, body in chunks:
                inbox.store(conn, source, body, now, kind=kind)
            ledger.mark_processed(conn, raw_id, now)

        await self.store.write(work)
        if chunks:
            self.stored()

    async def balance(
        self, source: str, raw: bytes, remain: Decimal, low: Decimal | None = None
    ) -> None:
        """Keep a balance read: a rise releases jobs held for it; crossing `low` is an event."""
        now = self.clock()
        touched: set[str] = set()

        fence = self.fences.get(source)

        def work(conn: Connection) -> None:
            if fence is not None:
                fence(conn)
            raw_id = ledger.store_raw(conn, source, "getBalance", raw, now)
            self._balance(conn, source, remain, low, now, touched)
            ledger.mark_processed(conn, raw_id, now)

        await self.store.write(work)
        self.metrics.balance.set(float(remain))
        self.pipeline.flush_log(self.pipeline.log)
        self.pipeline.wake(touched)

    def _balance(
        self,
        conn: Connection,
        source: str,
        balance: Decimal,
        low: Decimal | None,
        now: float,
        touched: set[str],
    ) -> None:
        key = f"balance|{source}"
        previous_text = ledger.get_setting(conn, key)
        previous = Decimal(previous_text) if previous_text is not None else None
        ledger.put_setting(conn, key, str(balance))
        if previous is not None and balance > previous:
            released = jobs.release_held(conn, source, now)
            if released:
                touched.add(source)
                self.pipeline.notes.info(
                    "balance_topped_up", balance=str(balance), released=released
                )
        if low is None or balance >= low or (previous is not None and previous < low):
            return  # fine, or already reported when it crossed
        event = Event(
            kind=EventKind.SYSTEM,
            source=source,
            labels={"alertname": "SmsBalanceLow", "account": source},
            text=f"SMS balance {balance} is below {low}",
            data={"balance": str(balance), "threshold": str(low)},
            fingerprint=f"balance-low|{source}",
        )
        self.pipeline.notes.warning("balance_low", balance=str(balance), threshold=str(low))
        self._decide(conn, event, now, touched)

    # --- what the processor calls, inside its transaction ------------------------------------

    def replies(
        self,
        conn: Connection,
        source: str,
        records: Sequence[ReplyRecord],
        now: float,
        touched: set[str],
    ) -> int:
        queued = 0
        for reply in records:
            digest = hashlib.sha256(reply.text.encode()).hexdigest()
            if not ledger.first_time(conn, f"reply|{reply.mobile}|{reply.raw_time}|{digest}", now):
                continue
            self.metrics.replies.inc()
            paging = self.pipeline.paging
            if paging is not None:
                answered, command = paging.reply(
                    conn, source, reply.mobile, reply.text, now, touched
                )
                queued += answered
                if command:
                    # A paging command (`1a`, `确认`): acted on and answered, not forwarded.
                    self.pipeline.notes.info(
                        "reply_command", mobile=mask_number(reply.mobile), jobs=answered
                    )
                    continue
            found, routing = self._conversation_for(conn, reply, now)
            original = jobs.get_event(conn, found.event_id) if found and found.event_id else None
            event = Event(
                kind=EventKind.REPLY,
                source=source,
                labels=dict(original.labels) if original else {},
                text=reply.text,
                data={
                    "mobile": reply.mobile,
                    "time": reply.time,
                    "msgid": reply.ref,
                    "original": original.to_json() if original else None,
                    "routing": routing,
                },
                fingerprint=digest[:16],
                conversation=(found.conversation if found else self.pipeline.conversations.default),
            )
            forwarded = self._decide(conn, event, now, touched)
            queued += forwarded
            if forwarded:
                self.metrics.replies_forwarded.inc()  # once per reply, however many posts
            self.pipeline.notes.info(
                "reply_received",
                mobile=mask_number(reply.mobile),
                forwarded=forwarded,
                conversation=bool(found),
            )
        return queued

    def _conversation_for(
        self, conn: Connection, reply: ReplyRecord, now: float
    ) -> tuple[conversations.OpenConversation | None, str]:
        """The conversation a reply answers, and how it was found (for logs and templates).

        A code ("#2") picks one; an unknown or expired code goes to the default place, never to
        a guess; no code picks the newest.
        """
        match = conversations.REPLY_CODE.search(reply.text)
        if match and self.pipeline.conversations.reply_codes:
            code = int(match.group(1))
            found = conversations.by_code(conn, reply.mobile, code, now)
            if found is not None:
                return found, f"code #{code}"
            if conversations.latest_conversation(conn, reply.mobile, now) is not None:
                return None, f"unknown or expired code #{code}"
        found = conversations.latest_conversation(conn, reply.mobile, now)
        return found, "newest conversation" if found else "no open conversation"

    def reports(
        self,
        conn: Connection,
        source: str,
        records: Sequence[ReportRecord],
        now: float,
        touched: set[str],
    ) -> int:
        queued = 0
        for report in records:
            key = f"report|{report.ref}|{report.mobile}|{report.carrier_code}"
            if not ledger.first_time(conn, key, now):
                continue
            self.metrics.reports.labels(carrier_code_label(report.carrier_code)).inc()
            settled = jobs.record_delivery(
                conn, report.ref, report.mobile, report.status, report.carrier_code
            )
            for record in settled:
                if self.pipeline.paging is not None:
                    queued += self.pipeline.paging.report(
                        conn, record.id, report.status, now, touched
                    )
                original = jobs.get_event(conn, record.event_id) if record.event_id else None
                event = Event(
                    kind=EventKind.DELIVERY,
                    source=source,
                    labels=dict(original.labels) if original else {},
                    text=f"{report.status}: {report.carrier_code}",
                    data={
                        "status": report.status,
                        "carrier_code": report.carrier_code,
                        "description": report.description,
                        "mobile": report.mobile,
                        "msgid": report.ref,
                        "job": record.id,
                        "original": original.to_json() if original else None,
                    },
                    fingerprint=f"{report.ref}:{report.mobile}",
                    conversation=record.conversation,
                )
                queued += self._decide(conn, event, now, touched)
            self.pipeline.notes.info(
                "delivery_report",
                mobile=mask_number(report.mobile),
                msgid=report.ref,
                status=report.status,
                carrier_code=report.carrier_code,
                jobs=len(settled),
            )
        return queued

    def _decide(self, conn: Connection, event: Event, now: float, touched: set[str]) -> int:
        decisions = self.pipeline.decide(event, datetime.fromtimestamp(now, UTC))
        self.metrics.events.labels(event.source, event.kind.value).inc()
        for decision in decisions:
            self.metrics.rule_matches.labels(decision.rule).inc()
        return self.pipeline.apply(conn, event, decisions, now, touched)


def _chunks(records: Sequence[ReplyRecord] | Sequence[ReportRecord]) -> list[bytes]:
    """The records as JSON arrays of at most CHUNK each (encoded before any transaction)."""
    items: list[dict[str, Any]] = [record.to_json() for record in records]
    return [
        json.dumps(items[i : i + CHUNK], ensure_ascii=False, separators=(",", ":")).encode()
        for i in range(0, len(items), CHUNK)
    ]
