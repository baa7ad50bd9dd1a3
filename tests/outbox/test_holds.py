"""Holds: a paused account holds the whole claim without calls, uses no attempt, is released at
once when the output works again, and fails only past the maximum hold age."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence

import structlog

from bridge.events import Event, EventKind, Intent
from bridge.metrics import Metrics
from bridge.outbox import jobs as outbox
from bridge.outbox.dispatcher import Dispatcher, RetryPolicy
from bridge.plugin.base import Job, Outcome, OutcomeKind, Output, PluginContext
from bridge.store import Store
from bridge.testing import CaptureConfig


class AccountOutput(Output):
    """One call per job; while `paused`, every call answers pause_account."""

    type_name = "account"
    config_class = CaptureConfig

    def __init__(self) -> None:
        ctx = PluginContext(name="sms", http=None, log=structlog.get_logger())  # type: ignore[arg-type]
        super().__init__(CaptureConfig(), ctx)
        self.paused = True
        self.calls: list[list[int]] = []
        self.changed = asyncio.Event()

    async def deliver(self, jobs: Sequence[Job]) -> list[Outcome]:
        self.calls.append([job.id for job in jobs])
        self.changed.set()
        if self.paused:
            return [
                Outcome(job.id, OutcomeKind.PAUSE_ACCOUNT, "account locked", code="locked")
                for job in jobs
            ]
        return [Outcome(job.id, OutcomeKind.SENT, ref=f"m{job.id}") for job in jobs]


async def queue(store: Store, count: int, created: float) -> list[int]:
    def work(conn: sqlite3.Connection) -> list[int]:
        ids = []
        for n in range(count):
            event = Event(kind=EventKind.ALERT, source="t", labels={"alertname": f"A{n}"})
            intent = Intent("sms", f"1510211{n:04d}", f"text {n}", "rule", event)
            ids.append(outbox.add_job(conn, intent, outbox.add_event(conn, event), created))
        return ids

    return await store.write(work)


async def rows(store: Store) -> list[tuple[str, int, str, str]]:
    def read(conn: sqlite3.Connection) -> list[tuple[str, int, str, str]]:
        query = "SELECT state, attempts, code, reason FROM jobs ORDER BY id"
        return [tuple(row) for row in conn.execute(query)]  # type: ignore[misc]

    return await store.read(read)


async def test_a_paused_account_holds_the_claim_and_is_released_at_once(store: Store) -> None:
    """The first call pauses: the other jobs are held without a call and without an attempt;
    release_held sends them at once, long before the hold would have expired."""
    await queue(store, 3, created=0.0)
    output = AccountOutput()
    dispatcher = Dispatcher(
        store,
        {"sms": output},
        metrics=Metrics(),
        log=structlog.get_logger(),
        concurrency=1,
        retry=RetryPolicy(ceiling=3600.0),
        clock=lambda: 1000.0,
    )
    dispatcher.start()
    try:
        await output.changed.wait()
        await dispatcher.stop(grace=5)  # the call under way is recorded, the rest held
        assert output.calls == [[1]]
        assert await rows(store) == [("pending", 0, "pause_account", "account locked")] * 3
        output.paused = False
        dispatcher.start()
        assert await dispatcher.release_held("sms") == 3
        async with asyncio.timeout(5):
            while len(output.calls) < 4:
                output.changed.clear()
                if len(output.calls) < 4:
                    await output.changed.wait()
    finally:
        await dispatcher.stop(grace=5)  # the calls under way are recorded first
    assert sorted(output.calls[1:]) == [[1], [2], [3]]
    assert {state for state, *_ in await rows(store)} == {"sent"}


async def test_a_hold_past_the_maximum_age_fails_with_the_reason(store: Store) -> None:
    """A job queued longer ago than max_hold fails instead of being held again."""
    (job_id,) = await queue(store, 1, created=0.0)
    output = AccountOutput()
    failed: list[str] = []
    dispatcher = Dispatcher(
        store,
        {"sms": output},
        metrics=Metrics(),
        log=structlog.get_logger(),
        retry=RetryPolicy(max_hold=86400.0),
        clock=lambda: 86400.0,
        on_failed=lambda record, reason: failed.append(reason),
    )
    dispatcher.start()
    await output.changed.wait()
    await dispatcher.stop(grace=5)
    assert await rows(store) == [("failed", 1, "locked", "held for more than 24 h: account locked")]
    assert failed == ["held for more than 24 h: account locked"]
    assert job_id == 1
