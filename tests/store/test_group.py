"""GroupWriter: batches, one outcome each; a failed commit or a dead thread fails, never hangs."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bridge.plugin import StoreUnavailableError
from bridge.store.group import GroupWriter, Pending, Ran


class Runner:
    """A batch runner that records batches, holds the first until released, and fails as told."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        self.fail: BaseException | None = None
        self.settled: list[tuple[str | None, bool | None]] = []

    def run(self, batch: list[Pending]) -> Ran:
        self.batches.append([pending.work(None) for pending in batch])  # type: ignore[arg-type]
        self.started.set()
        self.release.wait(10)
        if self.fail is not None:
            raise self.fail
        maintenance = batch[0].maintenance
        return Ran([(True, value) for value in self.batches[-1]], committed=not maintenance)

    def on_settled(self, error: BaseException | None, ran: Ran | None) -> None:
        self.settled.append((None if error is None else str(error), ran and ran.committed))


@pytest.fixture
async def writer() -> AsyncIterator[tuple[GroupWriter, Runner]]:
    runner = Runner()
    group = GroupWriter("test-writer", runner.run, runner.on_settled)
    group.start(asyncio.get_running_loop())
    yield group, runner
    runner.release.set()
    await group.stop()


def value(n: int) -> Callable[[Any], int]:
    return lambda conn: n


async def test_units_queued_during_a_batch_are_the_next_batch(
    writer: tuple[GroupWriter, Runner],
) -> None:
    group, runner = writer
    first = asyncio.ensure_future(group.submit(value(0)))
    assert await asyncio.to_thread(runner.started.wait, 10)
    later = [asyncio.ensure_future(group.submit(value(n), pure=True)) for n in range(1, 6)]
    await asyncio.sleep(0)
    runner.release.set()
    assert await first == 0
    assert [await task for task in later] == [1, 2, 3, 4, 5]
    assert runner.batches == [[0], [1, 2, 3, 4, 5]]
    assert runner.settled == [(None, True), (None, True)]


async def test_a_maintenance_unit_runs_alone(writer: tuple[GroupWriter, Runner]) -> None:
    group, runner = writer
    first = asyncio.ensure_future(group.submit(value(0)))
    assert await asyncio.to_thread(runner.started.wait, 10)
    queued = [
        asyncio.ensure_future(group.submit(value(1))),
        asyncio.ensure_future(group.submit(value(2), maintenance=True)),
        asyncio.ensure_future(group.submit(value(3))),
    ]
    await asyncio.sleep(0)
    runner.release.set()
    assert [await first, *[await task for task in queued]] == [0, 1, 2, 3]
    assert runner.batches == [[0], [1], [2], [3]]
    assert runner.settled[2] == (None, False)  # maintenance is not a commit


async def test_a_failed_commit_fails_its_whole_batch(writer: tuple[GroupWriter, Runner]) -> None:
    group, runner = writer
    runner.fail = OSError("disk full")
    runner.release.set()
    outcomes = await asyncio.gather(
        *(group.submit(value(n), pure=True) for n in range(3)), return_exceptions=True
    )
    assert all(isinstance(outcome, StoreUnavailableError) for outcome in outcomes)
    assert str(outcomes[0]) == "commit failed: disk full"
    assert runner.settled[0] == ("disk full", None)
    assert group.is_running  # the next batch may commit


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
async def test_a_dead_writer_fails_what_was_queued_and_refuses_more(
    writer: tuple[GroupWriter, Runner],
) -> None:
    group, runner = writer
    runner.fail = SystemExit()  # not an Exception: it ends the thread
    first = asyncio.ensure_future(group.submit(value(0)))
    assert await asyncio.to_thread(runner.started.wait, 10)
    queued = asyncio.ensure_future(group.submit(value(1)))
    await asyncio.sleep(0)
    runner.release.set()
    for task in (first, queued):  # the batch it died in, and the one still queued
        with pytest.raises(StoreUnavailableError, match="the store's writer stopped"):
            await asyncio.wait_for(task, 10)
    assert not group.is_running
    with pytest.raises(StoreUnavailableError, match="not open"):
        await group.submit(value(2))
