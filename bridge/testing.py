"""Test helpers for smsbridge and its adapters: a simulator on its own loop, for sync tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from typing import TypeVar

import pytest
import structlog

from bridge.config import ConfigModel
from bridge.plugin import Job, Outcome, OutcomeKind, Output, PluginContext
from bridge.plugins.c123.simulator import Simulator, SimulatorSettings

T = TypeVar("T")


class LoopThread:
    """An event loop running in a thread, so sync code (hypothesis, the CLI) can await on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, factory: Callable[[], Awaitable[T]], timeout: float = 30) -> T:
        async def wrapped() -> T:
            return await factory()

        future: Future[T] = asyncio.run_coroutine_threadsafe(wrapped(), self.loop)
        return future.result(timeout=timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


@pytest.fixture(scope="module")
def module_loop_thread() -> Iterator[LoopThread]:
    """One background loop shared by a module's tests (hypothesis reruns a test many times)."""
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture
def threaded_simulator(loop_thread: LoopThread) -> Iterator[Simulator]:
    """A simulator (reports due at once, no rate limit) served from a background loop."""
    simulator = Simulator(SimulatorSettings(report_delay=0, rate_limit=None))
    loop_thread.run(simulator.start)
    yield simulator
    loop_thread.run(simulator.stop)


class CaptureConfig(ConfigModel):
    """A capturing output takes no options."""


class CapturingOutput(Output):
    """An output that records every job and answers with scripted outcomes (default: sent).

    `script` is consumed one OutcomeKind per delivered job; when it runs out, jobs are sent.
    """

    type_name = "capture"
    config_class = CaptureConfig

    def __init__(self, name: str = "capture", script: Iterable[OutcomeKind] = ()) -> None:
        # A capturing output never makes HTTP calls, so it needs no session.
        ctx = PluginContext(name=name, http=None, log=structlog.get_logger())  # type: ignore[arg-type]
        super().__init__(CaptureConfig(), ctx)
        self.delivered: list[Job] = []
        self.batches: list[int] = []
        self.script = list(script)
        self.changed = asyncio.Event()

    def split(self, jobs: Sequence[Job]) -> list[list[Job]]:
        return [list(jobs)]  # like a gateway that takes a whole batch in one call

    async def deliver(self, jobs: Sequence[Job]) -> list[Outcome]:
        self.delivered.extend(jobs)
        self.batches.append(len(jobs))
        outcomes = []
        for job in jobs:
            kind = self.script.pop(0) if self.script else OutcomeKind.SENT
            outcomes.append(
                Outcome(
                    job.id,
                    kind,
                    reason=f"scripted {kind.value}",
                    ref=f"ref-{job.id}",
                    segments=1,
                    code="scripted",
                    retry_after=0.0,
                )
            )
        self.changed.set()
        return outcomes

    async def wait_for(self, count: int, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - a deadline, like asyncio.wait_for
        """Return once at least `count` jobs were delivered."""
        async with asyncio.timeout(timeout):
            while len(self.delivered) < count:
                self.changed.clear()
                await self.changed.wait()
