"""The supervisor: failures are logged with their traceback, counted, restarted; status tells."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from bridge.logging import configure_logging
from bridge.metrics import Metrics
from bridge.runtime.supervisor import Backoff, Supervisor, TaskState

QUICK = Backoff(first=0.01, ceiling=0.04, healthy_after=0.2, give_up_after=1000)


class Log:
    """The JSON lines a supervisor writes, as the daemon would write them."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        configure_logging(self.stream, json=True)
        self.logger = structlog.get_logger("smsbridge")

    def lines(self, event: str) -> list[dict[str, Any]]:
        found = [json.loads(line) for line in self.stream.getvalue().splitlines()]
        return [line for line in found if line["event"] == event]


@pytest.fixture
def log() -> Iterator[Log]:
    yield Log()
    configure_logging(io.StringIO(), json=True)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:  # noqa: ASYNC109
    """Poll a condition with a deadline (for what has no event to await)."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - task states change without an event
            await asyncio.sleep(0.005)


def restarts(metrics: Metrics, task: str) -> float:
    value = metrics.registry.get_sample_value("smsbridge_task_restarts_total", {"task": task})
    return value or 0.0


async def test_a_failing_task_is_logged_counted_and_restarted(log: Log) -> None:
    """Each failure is a task_failed line with the traceback, a count, and a restart."""
    metrics = Metrics()
    supervisor = Supervisor(log=log.logger, restarts=metrics.task_restarts, backoff=QUICK)
    runs = 0
    steady = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs <= 3:
            raise OSError(f"disk trouble number {runs}")
        steady.set()
        await asyncio.Event().wait()

    supervisor.start("flaky", flaky)
    await asyncio.wait_for(steady.wait(), 5)
    failed = log.lines("task_failed")
    assert [line["task"] for line in failed] == ["flaky"] * 3
    assert [line["failures"] for line in failed] == [1, 2, 3]
    assert all("Traceback" in line["exception"] for line in failed)
    assert "OSError: disk trouble number 3" in failed[-1]["exception"]
    assert restarts(metrics, "flaky") == 3
    status = supervisor.status()["flaky"]
    # Restarted, but not yet long enough without failing to count as well again.
    assert (status.state, status.error, status.restarts) == (
        TaskState.FAILING,
        "OSError: disk trouble number 3",
        3,
    )
    assert supervisor.problems() == {"flaky": "failing: OSError: disk trouble number 3"}
    await until(lambda: supervisor.status()["flaky"].state is TaskState.RUNNING)
    assert supervisor.problems() == {}
    await supervisor.stop()
    assert supervisor.status() == {}


async def test_the_backoff_grows_and_is_capped() -> None:
    """Restarts wait longer after each failure in a row, never longer than the ceiling."""
    policy = Backoff(first=0.02, ceiling=0.08, healthy_after=10, give_up_after=1000)
    supervisor = Supervisor(log=structlog.get_logger(), backoff=policy)
    starts: list[float] = []

    async def failing() -> None:
        starts.append(time.monotonic())
        raise RuntimeError("no")

    supervisor.start("failing", failing)
    await until(lambda: len(starts) >= 6)
    await supervisor.stop()
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    doubling = (0.02, 0.04, 0.08, 0.08, 0.08)
    assert all(gap >= floor for gap, floor in zip(gaps, doubling, strict=True))
    assert all(gap < 0.08 + 0.5 for gap in gaps), "capped at the ceiling (plus scheduling)"


@given(
    first=st.floats(0.001, 5),
    ceiling=st.floats(0.001, 60),
    failures=st.integers(1, 10_000),
)
def test_backoff_delay_properties(first: float, ceiling: float, failures: int) -> None:
    """The delay starts at `first`, never shrinks as failures add up, never passes the ceiling."""
    policy = Backoff(first=first, ceiling=ceiling)
    assert policy.delay(1) == min(first, ceiling)
    assert policy.delay(failures) <= policy.delay(failures + 1) <= ceiling


async def test_a_task_that_keeps_failing_is_dead(log: Log) -> None:
    """After `give_up_after` failures in a row it is not restarted, and says so."""
    policy = Backoff(first=0.001, ceiling=0.001, healthy_after=10, give_up_after=3)
    supervisor = Supervisor(log=log.logger, backoff=policy)
    runs = 0

    async def broken() -> None:
        nonlocal runs
        runs += 1
        raise ValueError("bad state")

    runner = supervisor.start("broken", broken)
    await asyncio.wait_for(runner, 5)
    assert runs == 3
    assert supervisor.dead() == ["broken"]
    assert supervisor.status()["broken"].state is TaskState.DEAD
    assert supervisor.problems() == {"broken": "dead: ValueError: bad state"}
    (dead,) = log.lines("task_dead")
    assert (dead["task"], dead["failures"], dead["level"]) == ("broken", 3, "error")
    assert len(log.lines("task_failed")) == 3


async def test_a_loop_that_returns_is_done_not_restarted() -> None:
    """Returning is finishing: no restart, no problem reported, no longer listed."""
    supervisor = Supervisor(log=structlog.get_logger(), backoff=QUICK)
    runs = 0

    async def once() -> None:
        nonlocal runs
        runs += 1

    await asyncio.wait_for(supervisor.start("once", once), 5)
    assert runs == 1
    assert supervisor.status() == {}


async def test_a_stray_cancellation_from_inside_is_a_failure(log: Log) -> None:
    """A CancelledError the task raised itself (not a stop) must not end it silently."""
    supervisor = Supervisor(log=log.logger, backoff=QUICK)
    runs = 0
    steady = asyncio.Event()

    async def confused() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise asyncio.CancelledError
        steady.set()
        await asyncio.Event().wait()

    supervisor.start("confused", confused)
    await asyncio.wait_for(steady.wait(), 5)
    assert [line["task"] for line in log.lines("task_failed")] == ["confused"]
    await supervisor.stop()


async def test_triggered_work_runs_once_per_trigger_and_coalesces() -> None:
    """Work runs on a trigger; triggers that come while it runs make one more run, not many."""
    supervisor = Supervisor(log=structlog.get_logger(), backoff=QUICK)
    release = asyncio.Event()
    runs = 0

    async def work() -> None:
        nonlocal runs
        runs += 1
        await release.wait()

    supervisor.start_triggered("poll", work)
    await asyncio.sleep(0.02)
    assert runs == 0, "nothing runs before the first trigger"
    supervisor.trigger("poll")
    await until(lambda: runs == 1)
    for _ in range(5):
        supervisor.trigger("poll")
    release.set()
    await until(lambda: runs == 2)
    await asyncio.sleep(0.05)
    assert runs == 2
    await supervisor.stop()


async def test_failed_triggered_work_is_retried_until_it_works(log: Log) -> None:
    """Failed work is reported, then run again after the backoff without a new trigger; the
    run that works clears the report."""
    metrics = Metrics()
    policy = Backoff(first=0.2, ceiling=0.2, healthy_after=10, give_up_after=1000)
    supervisor = Supervisor(log=log.logger, restarts=metrics.task_restarts, backoff=policy)
    outcomes = [RuntimeError("store is full"), None]
    done = 0

    async def work() -> None:
        nonlocal done
        outcome = outcomes.pop(0)
        done += 1
        if outcome is not None:
            raise outcome

    supervisor.start_triggered("poll", work)
    supervisor.trigger("poll")
    await until(lambda: done == 1 and supervisor.status()["poll"].error != "")
    assert supervisor.problems() == {"poll": "failing: RuntimeError: store is full"}
    assert restarts(metrics, "poll") == 1
    await until(lambda: done == 2)
    await until(lambda: supervisor.status()["poll"].state is TaskState.RUNNING)
    assert supervisor.problems() == {}
    assert outcomes == []
    await asyncio.sleep(0.05)
    assert done == 2, "once it worked, it waits for the next trigger again"
    await supervisor.stop()


async def test_stop_lets_triggered_work_finish_and_cancels_loops() -> None:
    """Work under way finishes within the grace; loops stop at once."""
    supervisor = Supervisor(log=structlog.get_logger(), backoff=QUICK)
    started, finished, cancelled = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def work() -> None:
        started.set()
        await asyncio.sleep(0.1)
        finished.set()

    async def loop() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    supervisor.start_triggered("poll", work)
    supervisor.start("loop", loop)
    supervisor.trigger("poll")
    await asyncio.wait_for(started.wait(), 5)
    await supervisor.stop(grace=5)
    assert finished.is_set()
    assert cancelled.is_set()
    assert supervisor.status() == {}


async def test_stop_is_bounded_by_the_grace(log: Log) -> None:
    """Work that does not finish within the grace is cancelled, and that is logged."""
    supervisor = Supervisor(log=log.logger, backoff=QUICK)
    started = asyncio.Event()

    async def stuck() -> None:
        started.set()
        await asyncio.Event().wait()

    supervisor.start_triggered("stuck", stuck)
    supervisor.trigger("stuck")
    await asyncio.wait_for(started.wait(), 5)
    began = time.monotonic()
    await supervisor.stop(grace=0.1)
    assert time.monotonic() - began < 2
    (line,) = log.lines("task_stop_timeout")
    assert line["tasks"] == ["stuck"]


async def test_a_task_waiting_to_restart_stops_at_once() -> None:
    """A stop does not wait out a restart's backoff."""
    policy = Backoff(first=60, ceiling=60, healthy_after=10, give_up_after=1000)
    supervisor = Supervisor(log=structlog.get_logger(), backoff=policy)
    failed = asyncio.Event()

    async def failing() -> None:
        failed.set()
        raise RuntimeError("no")

    supervisor.start_triggered("poll", failing)
    supervisor.trigger("poll")
    await asyncio.wait_for(failed.wait(), 5)
    began = time.monotonic()
    await supervisor.stop(grace=30)
    assert time.monotonic() - began < 2


async def test_error_texts_are_secrets_free() -> None:
    """The error a status carries has phone numbers masked, as log lines do."""
    supervisor = Supervisor(log=structlog.get_logger(), backoff=QUICK)
    failed = asyncio.Event()

    async def leaky() -> None:
        failed.set()
        raise RuntimeError("could not page 15102110086")

    supervisor.start_triggered("leaky", leaky)
    supervisor.trigger("leaky")
    await asyncio.wait_for(failed.wait(), 5)
    await until(lambda: supervisor.status()["leaky"].error != "")
    error = supervisor.status()["leaky"].error
    assert "15102110086" not in error
    assert error.startswith("RuntimeError: could not page 151")
    await supervisor.stop()


async def test_a_name_runs_once() -> None:
    """Two tasks of one name would make the status lie: the second start is refused."""
    supervisor = Supervisor(log=structlog.get_logger(), backoff=QUICK)

    async def forever() -> None:
        await asyncio.Event().wait()

    supervisor.start("one", forever)
    with pytest.raises(ValueError, match="already running"):
        supervisor.start("one", forever)
    await supervisor.stop()
