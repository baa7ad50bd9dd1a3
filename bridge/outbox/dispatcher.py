"""Workers that claim due jobs, deliver them in concurrent calls, and record each outcome."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import bridge.outbox.jobs as outbox
from bridge.metrics import Metrics
from bridge.outbox.jobs import JobRecord
from bridge.outbox.recording import HOLDS, Recorder, RetryPolicy
from bridge.plugin import Outcome, OutcomeKind, Output
from bridge.store import Connection, Store

__all__ = ["Dispatcher", "RetryPolicy"]

Clock = Callable[[], float]
# Runs one output's worker loop as a task: (output name, the loop) -> the task running it.
Spawn = Callable[[str, Callable[[], Awaitable[None]]], asyncio.Task[None]]
# Jobs queued or made due by another process (a bulk send, `smsbridge retry`) wake no worker:
# an idle worker looks at the queue this often.
IDLE_POLL = 2.0


def _own_task(output: str, worker: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
    async def run() -> None:
        await worker()

    return asyncio.create_task(run(), name=f"dispatch-{output}")


def _held_like(hold: Outcome, record: JobRecord) -> Outcome:
    return replace(hold, job_id=record.id)


@dataclass(slots=True)
class _Batch:
    """One claim: once a call of it is held (a top-up, a paused account), the rest wait too."""

    hold: Outcome | None = None


class _Lane:
    """One output's calls under way: at most `concurrency` at once, each recorded on its own."""

    def __init__(self, concurrency: int, wake: Callable[[], None]) -> None:
        self.slots = asyncio.Semaphore(concurrency)
        self.tasks: set[asyncio.Task[None]] = set()
        self.failure: BaseException | None = None
        self._wake = wake

    def start(self, call: Coroutine[Any, Any, None], name: str) -> None:
        """Run a call that holds a slot (already acquired) until it is recorded."""
        task = asyncio.create_task(self._run(call), name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, call: Coroutine[Any, Any, None]) -> None:
        try:
            await call
        except Exception as exc:  # the worker raises it: a failing store must not go unseen
            if self.failure is None:
                self.failure = exc
        finally:
            self.slots.release()
            self._wake()  # its jobs may be due again (a retry), or the worker must raise

    def check(self) -> None:
        if self.failure is not None:
            raise self.failure

    async def drain(self) -> None:
        while self.tasks:
            await asyncio.wait(list(self.tasks))

    async def cancel(self) -> None:
        for task in self.tasks:
            task.cancel()
        await self.drain()


class Dispatcher:
    """One worker per output: claim due jobs, deliver them in up to `concurrency` calls at once.

    Each call's outcomes are recorded before its slot is free for another call, so a crash
    repeats at most the calls in flight. A held call (a top-up, a paused account) holds the
    rest of its claim without calling.
    """

    def __init__(
        self,
        store: Store,
        outputs: Mapping[str, Output[Any]],
        *,
        metrics: Metrics,
        log: Any,
        clock: Clock = time.time,
        batch_size: int = 500,
        concurrency: int = 4,
        retry: RetryPolicy | None = None,
        on_failed: Callable[[JobRecord, str], None] = lambda record, reason: None,
        spawn: Spawn = _own_task,
        rule: str | None = None,
        stop_when_held: bool = False,
        instance: str = "",
    ) -> None:
        self.store = store
        self.instance = instance  # claims are marked with it, so another can take them over
        self.outputs = dict(outputs)
        self.metrics = metrics
        self.log = log
        self.clock = clock
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.retry = retry or RetryPolicy()
        self.recorder = Recorder(metrics, log, self.retry, on_failed)
        self._spawn = spawn  # a supervisor's, in the daemon: a worker that fails is restarted
        # Claim only this rule's jobs (a bulk send's own sender), or every job of the output.
        self.rule = rule
        # A bulk send's sender stops claiming once a call is held (a top-up, the account):
        # its other jobs would each make a call refused the same way.
        self.stop_when_held = stop_when_held
        self._wakeups = {name: asyncio.Event() for name in self.outputs}
        self.recorded: Callable[[], None] = lambda: None  # after each call's outcomes commit
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping = False

    async def recover(self, output: str | None = None, owners: Sequence[str] | None = None) -> int:
        """Settle jobs left 'sending' (by all outputs, or one whose worker is not running) by
        a stop or failure that did not record them; returns how many. With `owners`, only the
        jobs those instances claimed: this one's own, or those of instances that died.

        Their calls may or may not have reached the gateway, so they are ambiguous: resent
        where the rule accepts duplicates (paging does by default), otherwise marked unknown.
        """
        now = self.clock()

        def work(conn: Connection) -> list[JobRecord]:
            records = outbox.in_flight(conn, output, owners)
            for record in records:
                self.recorder.settle_unknown(
                    conn, record, "interrupted while sending", "interrupted", now
                )
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

    async def replace_outputs(self, outputs: Mapping[str, Output[Any]]) -> None:
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

    async def release_held(self, output: str) -> int:
        """The output works again (its account resumed): its held jobs go out now."""
        released = await self.store.write(
            partial(outbox.release_held, output=output, now=self.clock())
        )
        if released:
            self.log.info("messages_released", output=output, count=released)
        self.wake([output])
        return released

    async def stop(self, grace: float) -> None:
        """Stop claiming; let calls under way finish for up to `grace` seconds.

        Claimed jobs not yet handed to their output go back to the queue. A call still running
        after the grace is cancelled; its jobs stay 'sending' and recover() settles them on
        the next start.
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
        lane = _Lane(self.concurrency, wakeup.set)
        try:
            while not self._stopping:
                lane.check()
                wakeup.clear()
                await lane.slots.acquire()  # claim only when a call can start at once
                try:
                    records, due = await self.store.write(partial(self._claim, name, self.clock()))
                except BaseException:
                    lane.slots.release()
                    raise
                if records:
                    await self._launch(name, records, lane)
                    continue
                lane.slots.release()
                timeout = IDLE_POLL if due is None else min(max(due - self.clock(), 0.0), IDLE_POLL)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), timeout)
        except asyncio.CancelledError:
            await lane.cancel()
            raise
        await lane.drain()  # stopping: the calls under way record their outcomes first
        lane.check()

    def _claim(
        self, name: str, now: float, conn: Connection
    ) -> tuple[list[JobRecord], float | None]:
        """Due jobs, or (when there are none) when the next one is due: one transaction."""
        records = outbox.claim(conn, name, now, self.batch_size, self.instance, self.rule)
        return records, None if records else outbox.next_due(conn, name, self.rule)

    async def _launch(self, name: str, records: Sequence[JobRecord], lane: _Lane) -> None:
        """Start one call per unit as slots free up; the first slot is already held."""
        output = self.outputs[name]
        by_id = {record.id: record for record in records}
        try:
            units = output.split([record.job() for record in records])
        except Exception:
            self.log.exception("output_split_failed", output=name)
            units = [[record.job()] for record in records]
        batch = _Batch()
        for index, unit in enumerate(units):
            if index:
                await lane.slots.acquire()
            if batch.hold is not None or self._stopping or lane.failure is not None:
                lane.slots.release()
                rest = [by_id[job.id] for later in units[index:] for job in later]
                await self._set_aside(name, rest, batch.hold)
                return
            call = self._call(name, output, [by_id[job.id] for job in unit], batch)
            lane.start(call, f"dispatch-{name}-call")

    async def _set_aside(self, name: str, rest: list[JobRecord], hold: Outcome | None) -> None:
        """Jobs of a claim that will not be handed to the output now."""
        if hold is not None:
            # The gateway waits on the outside world (a top-up, the account): these wait with
            # it instead of each making a call that would be refused the same way.
            await self._record_all(name, rest, partial(_held_like, hold))
        else:
            ids = [record.id for record in rest]
            await self.store.write(partial(outbox.unclaim, job_ids=ids, now=self.clock()))

    async def _call(
        self, name: str, output: Output[Any], records: Sequence[JobRecord], batch: _Batch
    ) -> None:
        """Deliver one unit and record its outcomes; a hold among them holds the batch."""
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
        hold = next((o for o in outcomes if o.kind in HOLDS), None)
        if hold is not None and batch.hold is None:
            batch.hold = hold
        if hold is not None and self.stop_when_held:
            self._stopping = True

    async def _record_all(
        self, name: str, records: Sequence[JobRecord], outcome_of: Callable[[JobRecord], Outcome]
    ) -> None:
        now = self.clock()
        # One jitter for the whole unit: its jobs come due together and go out as one call
        # again, while different units spread out instead of hitting the gateway at once.
        jitter = random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not cryptography
        held: list[Outcome] = []

        def work(conn: Connection) -> None:
            for record in records:
                outcome = outcome_of(record)
                if outcome.kind in HOLDS:
                    held.append(outcome)
                self.recorder.record(conn, name, record, outcome, now, jitter)

        await self.store.write(work)
        self.recorded()
        if held:
            # One line per call: an outage must not flood the journal with one per message.
            first = held[0]
            self.log.warning(
                "messages_held",
                output=name,
                count=len(held),
                hold=first.kind.value,
                reason=first.reason,
                code=first.code,
                check_again_in=round(self.retry.delay(1, first.retry_after, jitter), 1),
            )
