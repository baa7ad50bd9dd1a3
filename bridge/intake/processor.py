"""The processor: takes committed inbox rows in bounded batches and turns them into jobs.

Rules, templates, storm control, chat commands and conversations run here, after the sender was
answered, in one transaction per batch that also marks the batch's rows processed. A crash
replays the rows whose transaction did not commit; a row that fails on its own is settled with
its error (and logged with the traceback), so one bad delivery never stops the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import bridge.intake.inbox as inbox
from bridge.events import Event, EventKind, ReplyRecord, ReportRecord
from bridge.intake.chatops import ChatOps
from bridge.intake.inbox import InboxKind, InboxRow
from bridge.intake.pipeline import Pipeline
from bridge.intake.replies import RecordIntake
from bridge.metrics import Metrics
from bridge.plugin import Accepted, Delivery, Parsed, StoreUnavailableError
from bridge.rules import Decision
from bridge.store import Coalescer, Connection, Store, ledger

Clock = Callable[[], float]
Parser = Callable[[bytes], Parsed]
# A batch is bounded by events (and rows): the write that holds them must stay short, since
# every webhook's commit waits behind it on the one writer.
BATCH_EVENTS = 64
BATCH_ROWS = 64
# Parsed events kept in memory between the answer and the processing; past this the processor
# parses the stored body again, as it does on a replay (a backlog then costs disk, not memory).
CACHE_EVENTS = 4096
# Rows committed elsewhere (another process, a missed wake-up) are found by looking this often.
IDLE_POLL = 1.0


@dataclass(slots=True)
class _Work:
    """One inbox row and what the processor will do with it."""

    row: InboxRow
    events: list[tuple[Event, list[Decision]]] = field(default_factory=list)
    commands: dict[int, Any] = field(default_factory=dict)  # event index -> prepared command
    replies: list[ReplyRecord] = field(default_factory=list)
    reports: list[ReportRecord] = field(default_factory=list)
    error: str = ""


class Processor:
    """Owns the inbox: stores deliveries for the inputs, processes them in the background."""

    def __init__(
        self,
        store: Store,
        pipeline: Pipeline,
        records: RecordIntake,
        *,
        parser: Callable[[str], Parser | None],
        metrics: Metrics,
        log: Any,
        clock: Clock = time.time,
    ) -> None:
        self.store = store
        self.pipeline = pipeline
        self.records = records
        self.parser = parser  # input instance name -> its parse, or None when it is gone
        self.metrics = metrics
        self.log = log
        self.clock = clock
        self.chatops: ChatOps | None = None  # set with the config's command policies
        self._cache: dict[int, Parsed] = {}
        self._cached = 0  # events in _cache
        self._wakeup = asyncio.Event()
        # Deliveries that arrive while the last ones are committed are stored together.
        self._deliveries = Coalescer(store, inbox.store_many)
        self._lock = asyncio.Lock()  # one batch at a time: a row must never be taken twice
        # Run first in each batch's transaction: with several instances, the processor
        # leader's lease check (it raises once another instance took over).
        self.fence: Callable[[Connection], None] | None = None

    # --- the request path ------------------------------------------------------------------

    async def submit(self, source: str, delivery: Delivery) -> Accepted:
        """Store a delivery in the inbox; returns once it is durably committed."""
        parsed = delivery.parsed
        row = inbox.NewRow(
            source,
            delivery.body,
            self.clock(),
            dedupe_key=delivery.dedupe_key,
            dedupe_window=delivery.dedupe_window,
        )
        row_id = await self._deliveries.write(row)
        if not row_id:
            self.metrics.duplicates.labels(source).inc()
            return Accepted(len(parsed.events), duplicate=True, rejected=parsed.rejected)
        if self._cached + len(parsed.events) <= CACHE_EVENTS:
            self._cache[row_id] = parsed
            self._cached += len(parsed.events)
        self._wakeup.set()
        return Accepted(len(parsed.events), rejected=parsed.rejected)

    def wake(self) -> None:
        """Rows were stored by someone else (a reply source): look now."""
        self._wakeup.set()

    async def run_events(self, events: Sequence[Event]) -> int:
        """Run events the daemon itself raised (not a delivery) through the rules now.

        Returns the messages queued; they are committed when this returns.
        """
        now = self.clock()
        work = _Work(InboxRow(0, "smsbridge", InboxKind.INPUT))
        self._decide(work, events, now)
        await self._prepare_commands(work)
        touched: set[str] = set()

        def run(conn: Connection) -> int:
            touched.clear()
            return self._apply(conn, work, now, touched)

        try:
            jobs = await self.store.write(run)
        except BaseException:
            self.pipeline.notes.clear()
            raise
        self._after([work], [jobs], touched)
        return jobs

    # --- the background task ---------------------------------------------------------------

    async def run(self) -> None:
        """Process batches until cancelled; a store failure raises (the supervisor restarts)."""
        while True:
            self._wakeup.clear()
            if await self.process_batch():
                await asyncio.sleep(0)  # let request handlers in between batches
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), IDLE_POLL)

    async def drain(self) -> None:
        """Process until no row waits (for a clean stop, and for tests)."""
        while await self.process_batch():
            pass

    async def process_batch(self) -> int:
        """Process up to one batch of unprocessed rows; returns how many rows were settled."""
        async with self._lock:
            return await self._process_batch()

    async def _process_batch(self) -> int:
        rows = await self.store.read(lambda conn: inbox.unprocessed(conn, 0, BATCH_ROWS))
        if not rows:
            return 0
        missing = [
            row.id for row in rows if row.kind is not InboxKind.INPUT or row.id not in self._cache
        ]
        stored = await self.store.read(lambda conn: inbox.bodies(conn, missing)) if missing else {}
        now = self.clock()
        works: list[_Work] = []
        events = 0
        for row in rows:
            work = self._plan(row, stored.get(row.id), now)
            works.append(work)
            events += len(work.events) + len(work.replies) + len(work.reports)
            if events >= BATCH_EVENTS:
                break
        for work in works:
            await self._prepare_commands(work)
            self.pipeline.encode_ahead(event for event, _ in work.events)
        try:
            await self._commit(works, now)
        except StoreUnavailableError:
            raise
        except Exception:
            # One row's effects failed: settle the rows one by one, so only that one fails.
            self.pipeline.notes.clear()
            self.log.exception("inbox_batch_failed", rows=len(works))
            for work in works:
                await self._commit_alone(work, now)
        finally:
            self.pipeline.encoded.clear()
        self._forget_through(max(work.row.id for work in works))
        return len(works)

    def _forget_through(self, last: int) -> None:
        """Drop cached parses of rows up to `last`: processed, or cached only after they were
        (a submit's answer can come back after the processor already took its row)."""
        for row_id in [row_id for row_id in self._cache if row_id <= last]:
            self._cached -= len(self._cache.pop(row_id).events)

    # --- planning: everything that needs no transaction --------------------------------------

    def _plan(self, row: InboxRow, body: bytes | None, now: float) -> _Work:
        work = _Work(row)
        try:
            if row.kind is InboxKind.INPUT:
                parsed = self._cache.get(row.id) or self._parse(row, body)
                self._decide(work, self._with_rejections(row.source, parsed), now)
            elif row.kind is InboxKind.REPLIES:
                work.replies = [ReplyRecord.from_json(item) for item in json.loads(body or b"[]")]
            else:
                work.reports = [ReportRecord.from_json(item) for item in json.loads(body or b"[]")]
        except LookupError as exc:
            work.error = f"cannot read the stored delivery: {exc.args[0]}"[:300]
        except Exception as exc:
            work.error = f"cannot read the stored delivery: {exc}"[:300]
            work.events.clear()
        return work

    def _parse(self, row: InboxRow, body: bytes | None) -> Parsed:
        parse = self.parser(row.source)
        if parse is None:
            raise LookupError(f"input {row.source!r} is no longer configured")
        return parse(body or b"")

    def _with_rejections(self, source: str, parsed: Parsed) -> list[Event]:
        """The events, plus one `system` event naming the items of the delivery refused."""
        events = list(parsed.events)
        if parsed.rejected:
            shown = "; ".join(f"item {r.index}: {r.error}" for r in parsed.rejected[:5])
            events.append(
                Event(
                    kind=EventKind.SYSTEM,
                    source=source,
                    labels={"alertname": "InputItemsRejected", "input": source},
                    text=f"{len(parsed.rejected)} item(s) from {source} could not be used: {shown}",
                    data={"rejected": [item.to_json() for item in parsed.rejected]},
                    fingerprint=f"rejected|{source}",
                )
            )
        return events

    def _decide(self, work: _Work, events: Iterable[Event], now: float) -> None:
        when = datetime.fromtimestamp(now, UTC)
        for event in events:
            decisions = self.pipeline.decide(event, when)
            for decision in decisions:
                decision.prerender()  # templates render here, not inside the write
            work.events.append((event, decisions))

    async def _prepare_commands(self, work: _Work) -> None:
        chatops = self.chatops
        if chatops is None:
            return
        for index, (event, _) in enumerate(work.events):
            if event.kind is EventKind.COMMAND:
                # A command may need the network (the balance): before the transaction.
                work.commands[index] = await chatops.prepare(event)

    # --- the transaction -----------------------------------------------------------------------

    async def _commit(self, works: Sequence[_Work], now: float) -> None:
        touched: set[str] = set()

        def run(conn: Connection) -> list[int]:
            if self.fence is not None:
                self.fence(conn)
            touched.clear()
            jobs = [self._apply(conn, work, now, touched) for work in works]
            done = [work.row.id for work in works if not work.error]
            inbox.mark_processed(conn, done, now)
            for work in works:
                if work.error:
                    inbox.mark_processed(conn, [work.row.id], now, work.error)
            return jobs

        jobs = await self.store.write(run)
        self._after(works, jobs, touched)

    async def _commit_alone(self, work: _Work, now: float) -> None:
        try:
            await self._commit([work], now)
        except StoreUnavailableError:
            raise
        except Exception as exc:
            self.pipeline.notes.clear()
            self.log.exception("delivery_failed", inbox_id=work.row.id, source=work.row.source)
            work.error = f"processing failed: {type(exc).__name__}: {exc}"[:300]
            await self.store.write(
                lambda conn: inbox.mark_processed(conn, [work.row.id], now, work.error)
            )
            self.pipeline.flush_log(self.log)

    def _apply(self, conn: Connection, work: _Work, now: float, touched: set[str]) -> int:
        if work.error:
            return 0
        jobs = 0
        chatops = self.chatops
        for index, (event, decisions) in enumerate(work.events):
            once = event.once
            if once is not None and ledger.seen_within(
                conn, f"once|{event.source}|{once.key}", now, once.window
            ):
                continue  # another delivery (an HA peer's, maybe to another instance) had it
            jobs += self.pipeline.apply(conn, event, decisions, now, touched)
            if index in work.commands and chatops is not None:
                event_id = self.pipeline.add_event(conn, event)
                jobs += chatops.run(
                    self.pipeline, conn, event, work.commands[index], event_id, now, touched
                )
        if work.replies:
            jobs += self.records.replies(conn, work.row.source, work.replies, now, touched)
        if work.reports:
            jobs += self.records.reports(conn, work.row.source, work.reports, now, touched)
        return jobs

    def _after(self, works: Sequence[_Work], jobs: Sequence[int], touched: set[str]) -> None:
        """Metrics and log lines for a committed batch, then wake whoever has new work."""
        self.pipeline.flush_log(self.log)
        for work, queued in zip(works, jobs, strict=True):
            for event, decisions in work.events:
                self.metrics.events.labels(event.source, event.kind.value).inc()
                for decision in decisions:
                    self.metrics.rule_matches.labels(decision.rule).inc()
            if work.error:
                self.log.error(
                    "delivery_failed",
                    inbox_id=work.row.id,
                    source=work.row.source,
                    reason=work.error,
                )
            elif work.row.kind is InboxKind.INPUT and work.row.id:
                self.log.info(
                    "delivery_processed",
                    inbox_id=work.row.id,
                    source=work.row.source,
                    events=len(work.events),
                    jobs=queued,
                )
        self.pipeline.wake(touched)
