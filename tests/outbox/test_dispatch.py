"""Dispatch: claim due jobs, deliver in batches, record outcomes, retry with backoff."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence

import pytest
import structlog

from bridge.events import Event, EventKind, Intent
from bridge.metrics import Metrics
from bridge.outbox import jobs as outbox
from bridge.outbox.dispatcher import Dispatcher, RetryPolicy
from bridge.outbox.jobs import JobState
from bridge.plugin.base import Job, Outcome, OutcomeKind
from bridge.store import Store
from bridge.testing import CapturingOutput

FAST = RetryPolicy(base=0.01, factor=1.0, ceiling=0.01, max_attempts=3)


def intent(n: int, *, retry_ambiguous: bool = True) -> Intent:
    event = Event(kind=EventKind.ALERT, source="test", labels={"alertname": f"A{n}"})
    return Intent(
        "capture", f"1510211{n:04d}", f"text {n}", "rule", event, retry_ambiguous=retry_ambiguous
    )


async def queue(store: Store, *intents: Intent) -> list[int]:
    def work(conn: sqlite3.Connection) -> list[int]:
        return [outbox.add_job(conn, i, outbox.add_event(conn, i.event), 0.0) for i in intents]

    return await store.write(work)


def states(store: Store) -> object:
    return store.read(
        lambda c: {r["id"]: r["state"] for r in c.execute("SELECT id, state FROM jobs")}
    )


async def test_due_jobs_go_out_in_one_batch(store: Store) -> None:
    """Jobs queued before the worker starts are delivered together and marked sent."""
    ids = await queue(store, *(intent(n) for n in range(5)))
    output = CapturingOutput()
    dispatcher = Dispatcher(
        store, {"capture": output}, metrics=Metrics(), log=structlog.get_logger()
    )
    dispatcher.start()
    await output.wait_for(5)
    await dispatcher.stop(grace=5)
    assert output.batches == [5]
    assert await states(store) == dict.fromkeys(ids, "sent")


async def test_wake_delivers_new_jobs_at_once(store: Store) -> None:
    """A woken worker picks up jobs queued after it went idle."""
    output = CapturingOutput()
    dispatcher = Dispatcher(
        store, {"capture": output}, metrics=Metrics(), log=structlog.get_logger()
    )
    dispatcher.start()
    await queue(store, intent(1))
    dispatcher.wake(["capture"])
    await output.wait_for(1)
    await dispatcher.stop(grace=5)
    assert [job.text for job in output.delivered] == ["text 1"]


async def test_retry_then_success(store: Store) -> None:
    """A retryable outcome puts the job back; the next attempt sends it."""
    (job_id,) = await queue(store, intent(1))
    output = CapturingOutput(script=[OutcomeKind.RETRY, OutcomeKind.SENT])
    dispatcher = Dispatcher(
        store, {"capture": output}, metrics=Metrics(), log=structlog.get_logger(), retry=FAST
    )
    dispatcher.start()
    await output.wait_for(2)
    await dispatcher.stop(grace=5)
    assert await states(store) == {job_id: "sent"}
    attempts = await store.read(lambda c: c.execute("SELECT attempts FROM jobs").fetchone()[0])
    assert attempts == 2


async def test_retries_are_bounded_with_a_reason(store: Store) -> None:
    """After the last attempt the job fails with a reason a person can read."""
    (job_id,) = await queue(store, intent(1))
    output = CapturingOutput(script=[OutcomeKind.RETRY] * 3)
    failed: list[str] = []
    dispatcher = Dispatcher(
        store,
        {"capture": output},
        metrics=Metrics(),
        log=structlog.get_logger(),
        retry=FAST,
        on_failed=lambda record, reason: failed.append(reason),
    )
    dispatcher.start()
    await output.wait_for(3)
    await dispatcher.stop(grace=5)
    reason = await store.read(lambda c: c.execute("SELECT reason FROM jobs").fetchone()[0])
    assert await states(store) == {job_id: "failed"}
    assert reason == "gave up after 3 attempts: scripted retry"
    assert failed == [reason]


@pytest.mark.parametrize(("retry_ambiguous", "final"), [(True, "sent"), (False, "unknown")])
async def test_ambiguous_outcomes_follow_the_rule(
    store: Store, retry_ambiguous: bool, final: str
) -> None:
    """An unknown outcome is resent only where the rule accepts duplicates."""
    (job_id,) = await queue(store, intent(1, retry_ambiguous=retry_ambiguous))
    output = CapturingOutput(script=[OutcomeKind.UNKNOWN, OutcomeKind.SENT])
    dispatcher = Dispatcher(
        store, {"capture": output}, metrics=Metrics(), log=structlog.get_logger(), retry=FAST
    )
    dispatcher.start()
    await output.wait_for(2 if retry_ambiguous else 1)
    await dispatcher.stop(grace=5)
    assert await states(store) == {job_id: final}


async def test_interrupted_jobs_are_recovered(store: Store) -> None:
    """Jobs left 'sending' by a crash are resent (or settled unknown) on the next start."""
    ids = await queue(store, intent(1), intent(2, retry_ambiguous=False))
    await store.write(lambda c: outbox.claim(c, "capture", 1.0, 10))
    output = CapturingOutput()
    dispatcher = Dispatcher(
        store, {"capture": output}, metrics=Metrics(), log=structlog.get_logger(), retry=FAST
    )
    assert await dispatcher.recover() == 2
    dispatcher.start()
    await output.wait_for(1)
    await dispatcher.stop(grace=5)
    assert await states(store) == {ids[0]: JobState.SENT.value, ids[1]: JobState.UNKNOWN.value}


async def test_a_raising_output_loses_nothing(store: Store) -> None:
    """An output that raises has its jobs put back to retry, not dropped."""
    await queue(store, intent(1))
    called = asyncio.Event()

    class Broken(CapturingOutput):
        async def deliver(self, jobs: Sequence[Job]) -> list[Outcome]:
            called.set()
            raise RuntimeError("adapter bug")

    dispatcher = Dispatcher(
        store,
        {"capture": Broken()},
        metrics=Metrics(),
        log=structlog.get_logger(),
        retry=RetryPolicy(base=60),
    )
    dispatcher.start()
    await called.wait()
    await dispatcher.stop(grace=5)  # the worker records the outcome before it stops
    row = await store.read(lambda c: c.execute("SELECT state, reason FROM jobs").fetchone())
    assert (row["state"], row["reason"]) == ("pending", "output error: RuntimeError")
