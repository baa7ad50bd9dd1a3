"""Workers that claim due jobs, hand them to their output, and record each outcome."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import bridge.outbox.jobs as outbox
from bridge.metrics import Metrics
from bridge.outbox.jobs import JobRecord, JobState
from bridge.plugin.base import Outcome, OutcomeKind, Output
from bridge.sms import mask_number
from bridge.store.sqlite import Store

Clock = Callable[[], float]
# Runs one output's worker loop as a task: (output name, the loop) -> the task running it.
Spawn = Callable[[str, Callable[[], Awaitable[None]]], asyncio.Task[None]]


def _own_task(output: str, worker: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
    async def run() -> None:
        await worker()

    return asyncio.create_task(run(), name=f"dispatch-{output}")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long a job is retried before a person is told it failed."""

    base: float = 2.0  # seconds before the first retry
    factor: float = 2.0
    ceiling: float = 600.0  # never wait longer than this between tries
    max_attempts: int = 20  # then the job fails with the last reason

    def delay(self, attempts: int, suggested: float | None, jitter: float = 1.0) -> float:
        backoff = min(self.ceiling, self.base * self.factor ** max(attempts - 1, 0)) * jitter
        # The ceiling bounds a suggestion too: a held message is looked at again at least then.
        return min(self.ceiling, max(backoff, suggested or 0.0))


def _display(record: JobRecord) -> str:
    return mask_number(record.recipient) if record.recipient.isdigit() else record.recipient


_SETTLED_EVENTS = {JobState.FAILED: "message_failed", JobState.UNKNOWN: "message_unknown"}


def _held_like(hold: Outcome, record: JobRecord) -> Outcome:
    return replace(hold, job_id=record.id)


class Dispatcher:
    """One worker per output: claim due jobs, deliver them as one batch, record outcomes."""

    def __init__(
        self,
        store: Store,
        outputs: Mapping[str, Output],
        *,
        metrics: Metrics,
        log: Any,
        clock: Clock = time.time,
        batch_size: int = 500,
        retry: RetryPolicy | None = None,
        on_failed: Callable[[JobRecord, str], None] = lambda record, reason: None,
        spawn: Spawn = _own_task,
    ) -> None:
        self.store = store
        self.outputs = dict(outputs)
        self.metrics = metrics
        self.log = log
        self.clock = clock
        self.batch_size = batch_size
        self.retry = retry or RetryPolicy()
        self.on_failed = on_failed
        self._spawn = spawn  # a supervisor's, in the daemon: a worker that fails is restarted
        self._wakeups = {name: asyncio.Event() for name in self.outputs}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping = False

    async def recover(self, output: str | None = None) -> int:
        """Settle jobs left 'sending' (by all outputs, or one whose worker is not running) by
        a stop or failure that did not record them; returns how many.

        Their calls may or may not have reached the gateway, so they are ambiguous: resent
        where the rule accepts duplicates (paging does by default), otherwise marked unknown.
        """
        now = self.clock()

        def work(conn: sqlite3.Connection) -> list[JobRecord]:
            records = outbox.in_flight(conn, output)
            for record in records:
                self._settle_unknown(conn, record, "interrupted while sending", "interrupted", now)
            return records

        records = await self.store.write(work)
        if records:
            self.log.warning("jobs_recovered", count=len(records))
        return len(records)

    def start(self) -> None:
        """Start one worker per output (again, after a stop)."""
        self._stopping = False
        for name in self.outputs:
            self._tasks[name] = self._spawn(name, partial(self._worker, name))

    async def replace_outputs(self, outputs: Mapping[str, Output]) -> None:
        """Swap in a reloaded set of outputs: new names get workers, removed names lose theirs.

        A worker of a kept name picks up the new instance on its next batch.
        """
        removed = set(self.outputs) - set(outputs)
        self.outputs = dict(outputs)
        for name in removed:
            task = self._tasks.pop(name)
            self._wakeups.pop(name)
            await self._cancel_after(task)
        for name in outputs:
            if name not in self._tasks:
                self._wakeups[name] = asyncio.Event()
                self._tasks[name] = self._spawn(name, partial(self._worker, name))

    async def _cancel_after(self, task: asyncio.Task[None]) -> None:
        # The removed output's jobs stay queued; it may come back with the next reload.
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def wake(self, outputs: Iterable[str]) -> None:
        """New jobs are due on these outputs."""
        for name in outputs:
            event = self._wakeups.get(name)
            if event is not None:
                event.set()

    async def stop(self, grace: float) -> None:
        """Stop claiming; let deliveries under way finish for up to `grace` seconds.

        A delivery still running then is cancelled; its jobs stay 'sending' and recover()
        settles them on the next start.
        """
        self._stopping = True
        for event in self._wakeups.values():
            event.set()
        tasks = list(self._tasks.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if pending:
            self.log.warning("dispatch_stop_timeout", outputs=[t.get_name() for t in pending])

    async def _worker(self, name: str) -> None:
        wakeup = self._wakeups[name]
        while not self._stopping:
            wakeup.clear()
            records, due = await self.store.write(partial(self._claim, name, self.clock()))
            if records:
                await self._deliver(name, records)
                continue
            timeout = None if due is None else max(due - self.clock(), 0.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), timeout)

    def _claim(
        self, name: str, now: float, conn: sqlite3.Connection
    ) -> tuple[list[JobRecord], float | None]:
        """Due jobs, or (when there are none) when the next one is due: one transaction."""
        records = outbox.claim(conn, name, now, self.batch_size)
        return records, None if records else outbox.next_due(conn, name)

    async def _deliver(self, name: str, records: Sequence[JobRecord]) -> None:
        output = self.outputs[name]
        by_id = {record.id: record for record in records}
        try:
            units = output.split([record.job() for record in records])
        except Exception:
            self.log.exception("output_split_failed", output=name)
            units = [[record.job()] for record in records]
        for index, unit in enumerate(units):
            # Record each call's outcomes before the next call: a crash repeats one call at most.
            hold = await self._deliver_unit(name, output, [by_id[job.id] for job in unit])
            if hold is not None:
                # The gateway waits on the outside world (a top-up): the rest of this batch
                # waits with it instead of each making a call that would be refused the same way.
                rest = [by_id[job.id] for later in units[index + 1 :] for job in later]
                if rest:
                    await self._record_all(name, rest, partial(_held_like, hold))
                return

    async def _deliver_unit(
        self, name: str, output: Output, records: Sequence[JobRecord]
    ) -> Outcome | None:
        """Deliver one unit and record its outcomes; returns a hold outcome if there was one."""
        try:
            outcomes = await output.deliver([record.job() for record in records])
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an adapter bug must not stop the others or lose the jobs
            self.log.exception("output_failed", output=name, jobs=len(records))
            outcomes = [
                Outcome(
                    r.id, OutcomeKind.RETRY, f"output error: {type(exc).__name__}", code="error"
                )
                for r in records
            ]
        by_id = {outcome.job_id: outcome for outcome in outcomes}

        def outcome_of(record: JobRecord) -> Outcome:
            return by_id.get(record.id) or Outcome(
                record.id, OutcomeKind.RETRY, "the output returned no outcome", code="missing"
            )

        await self._record_all(name, records, outcome_of)
        return next((o for o in outcomes if o.kind is OutcomeKind.RETRY and o.hold), None)

    async def _record_all(
        self, name: str, records: Sequence[JobRecord], outcome_of: Callable[[JobRecord], Outcome]
    ) -> None:
        now = self.clock()
        # One jitter for the whole unit: its jobs come due together and go out as one call
        # again, while different units spread out instead of hitting the gateway at once.
        jitter = random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not cryptography
        held: list[Outcome] = []

        def work(conn: sqlite3.Connection) -> None:
            for record in records:
                outcome = outcome_of(record)
                if outcome.kind is OutcomeKind.RETRY and outcome.hold:
                    held.append(outcome)
                self._record(conn, name, record, outcome, now, jitter)

        await self.store.write(work)
        if held:
            # One line for the batch: a balance outage must not flood the journal per message.
            first = held[0]
            self.log.warning(
                "messages_held",
                output=name,
                count=len(held),
                reason=first.reason,
                code=first.code,
                check_again_in=round(self.retry.delay(1, first.retry_after, jitter), 1),
            )

    def _record(
        self,
        conn: sqlite3.Connection,
        name: str,
        record: JobRecord,
        outcome: Outcome,
        now: float,
        jitter: float = 1.0,
    ) -> None:
        who = _display(record)
        if outcome.kind is OutcomeKind.SENT:
            outbox.mark_sent(conn, record.id, now, outcome.ref, outcome.segments, outcome.cost)
            self.metrics.messages.labels(name, "sent").inc()
            self.metrics.segments.inc(outcome.segments)
            self.metrics.cost.inc(float(outcome.cost))
            self.log.info(
                "message_sent",
                output=name,
                job=record.id,
                to=who,
                ref=outcome.ref,
                segments=outcome.segments,
                attempt=record.attempts + 1,
                latency=round(now - record.created_at, 4),
            )
        elif outcome.kind is OutcomeKind.RETRY and outcome.hold:
            self._hold(conn, name, record, outcome, now, jitter)
        elif outcome.kind is OutcomeKind.RETRY:
            self._retry(
                conn, name, record, outcome.reason, outcome.code, outcome.retry_after, now, jitter
            )
        elif outcome.kind is OutcomeKind.FAILED:
            self._fail(conn, name, record, outcome.reason, outcome.code, now)
        else:
            self._settle_unknown(conn, record, outcome.reason, outcome.code, now, jitter)

    def _retry(
        self,
        conn: sqlite3.Connection,
        name: str,
        record: JobRecord,
        reason: str,
        code: str,
        suggested: float | None,
        now: float,
        jitter: float = 1.0,
    ) -> None:
        attempts = record.attempts + 1
        if attempts >= self.retry.max_attempts:
            self._fail(
                conn, name, record, f"gave up after {attempts} attempts: {reason}", code, now
            )
            return
        delay = self.retry.delay(attempts, suggested, jitter)
        outbox.mark_retry(conn, record.id, now, now + delay, reason, code)
        self.metrics.retries.labels(name, code or "none").inc()
        self.log.warning(
            "message_retry",
            output=name,
            job=record.id,
            to=_display(record),
            reason=reason,
            code=code,
            attempt=attempts,
            retry_in=round(delay, 1),
        )

    def _hold(
        self,
        conn: sqlite3.Connection,
        name: str,
        record: JobRecord,
        outcome: Outcome,
        now: float,
        jitter: float,
    ) -> None:
        delay = self.retry.delay(1, outcome.retry_after, jitter)
        outbox.mark_retry(
            conn, record.id, now, now + delay, outcome.reason, outcome.code, attempt=False
        )
        self.metrics.retries.labels(name, outcome.code or "none").inc()

    def _fail(
        self,
        conn: sqlite3.Connection,
        name: str,
        record: JobRecord,
        reason: str,
        code: str,
        now: float,
    ) -> None:
        self._settle(conn, name, record, JobState.FAILED, reason, code, now)
        self.on_failed(record, reason)

    def _settle_unknown(
        self,
        conn: sqlite3.Connection,
        record: JobRecord,
        reason: str,
        code: str,
        now: float,
        jitter: float = 1.0,
    ) -> None:
        name = record.output
        if record.retry_ambiguous:
            self.log.warning(
                "message_ambiguous_retry",
                output=name,
                job=record.id,
                to=_display(record),
                reason=reason,
                note="may already have been sent; resending as the rule allows",
            )
            reason = f"may have been sent ({reason})"
            self._retry(conn, name, record, reason, code, None, now, jitter)
            return
        self._settle(
            conn,
            name,
            record,
            JobState.UNKNOWN,
            reason,
            code,
            now,
            note="may or may not have been sent; not resent because the rule forbids duplicates",
        )

    def _settle(
        self,
        conn: sqlite3.Connection,
        name: str,
        record: JobRecord,
        state: JobState,
        reason: str,
        code: str,
        now: float,
        **context: str,
    ) -> None:
        """Mark a job failed or unknown for good, count it, and say why in the log."""
        outbox.mark_final(conn, record.id, state, now, reason, code)
        self.metrics.messages.labels(name, state.value).inc()
        self.log.error(
            _SETTLED_EVENTS[state],
            output=name,
            job=record.id,
            to=_display(record),
            reason=reason,
            code=code,
            **context,
        )
