"""Test helpers for smsbridge and its adapters: a simulator on its own loop, for sync tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from typing import TypeVar

import pytest

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
