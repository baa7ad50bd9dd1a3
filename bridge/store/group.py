"""Group commit: a thread that runs queued units in batches, one commit each, for both backends."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from bridge.plugin import StoreUnavailableError
from bridge.store.connection import Connection

T = TypeVar("T")

# A batch bigger than this would hold back the first unit's answer too long.
MAX_BATCH = 512

Outcome = tuple[bool, Any]  # (True, the unit's value) or (False, the exception it raised)


@dataclass(slots=True)
class Pending:
    """A queued unit: `pure` ones may share a savepoint; a `maintenance` one runs alone,
    outside any transaction."""

    work: Callable[[Connection], Any]
    future: asyncio.Future[Any]
    pure: bool = False
    maintenance: bool = False


@dataclass(frozen=True, slots=True)
class Ran:
    """What running a batch gave: each unit's outcome, and whether it was a commit that wrote
    (a batch that changed nothing proves little about the disk)."""

    outcomes: list[Outcome]
    committed: bool = True
    wrote: bool = True


class GroupWriter:
    """Runs queued units on a thread of its own, a batch at a time through `run`, and resolves
    the batch's futures with one wake-up of the event loop.

    `run` raising means nothing of the batch is stored: every unit in it fails with
    StoreUnavailableError. `settled(error, ran)` is told, on the loop, of each batch's end.
    A writer that stopped (or died) fails whatever was still queued: nobody waits for ever.
    """

    def __init__(
        self,
        name: str,
        run: Callable[[list[Pending]], Ran],
        settled: Callable[[BaseException | None, Ran | None], None],
    ) -> None:
        self._name = name
        self._run = run
        self._settled = settled
        self._pending: deque[Pending] = deque()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._stopped: asyncio.Future[None] | None = None

    @property
    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._stopped = loop.create_future()
        self._thread = threading.Thread(target=self._write, name=self._name, daemon=True)
        self._thread.start()

    async def submit(
        self, work: Callable[[Connection], T], *, pure: bool = False, maintenance: bool = False
    ) -> T:
        """Queue `work`; returns its value once its batch is committed (or raises)."""
        if not self.is_running or self._loop is None:
            raise StoreUnavailableError("the store is not open")
        future: asyncio.Future[T] = self._loop.create_future()
        with self._wake:
            if self._stopping:  # the thread may have drained the queue for the last time
                raise StoreUnavailableError("the store is not open")
            self._pending.append(Pending(work, future, pure, maintenance))
            if len(self._pending) == 1:
                self._wake.notify()
        return await future

    async def stop(self) -> None:
        """Let what is queued be written, then end the thread."""
        if self._thread is None or self._stopped is None:
            return
        with self._wake:
            self._stopping = True
            self._wake.notify()
        await asyncio.shield(self._stopped)
        self._thread.join()  # it has nothing left but to end
        self._thread = None

    def _take(self) -> list[Pending] | None:
        """The next batch (a maintenance unit comes alone); None once stopping and drained."""
        with self._wake:
            while not self._pending:
                if self._stopping:
                    return None
                self._wake.wait()
            if self._pending[0].maintenance:
                return [self._pending.popleft()]
            batch: list[Pending] = []
            while self._pending and len(batch) < MAX_BATCH and not self._pending[0].maintenance:
                batch.append(self._pending.popleft())
            return batch

    def _write(self) -> None:
        loop, stopped = self._loop, self._stopped
        assert loop is not None
        assert stopped is not None
        batch: list[Pending] = []
        try:
            while (taken := self._take()) is not None:
                batch = taken
                try:
                    outcome: Ran | BaseException = self._run(batch)
                except Exception as exc:  # nothing in the batch is stored
                    outcome = exc
                with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                    loop.call_soon_threadsafe(self._settle, batch, outcome)
                batch = []
        finally:
            with self._wake:
                self._stopping = True
                left = batch + list(self._pending)
                self._pending.clear()
            with contextlib.suppress(RuntimeError):
                if left:  # the thread died: nobody may wait for ever
                    failure = StoreUnavailableError("the store's writer stopped")
                    loop.call_soon_threadsafe(self._settle, left, failure)
                loop.call_soon_threadsafe(_resolve, stopped)

    def _settle(self, batch: list[Pending], outcome: Ran | BaseException) -> None:
        """On the loop: resolve a batch's futures with its outcome."""
        if isinstance(outcome, BaseException):
            self._settled(outcome, None)
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(_unavailable(outcome))
            return
        self._settled(None, outcome)
        for pending, (ok, value) in zip(batch, outcome.outcomes, strict=True):
            if pending.future.done():
                continue
            if ok:
                pending.future.set_result(value)
            else:
                pending.future.set_exception(value)


def problem(is_open: bool, last_commit_error: str | None) -> str:
    """Why a store cannot take writes ('' when it can, as far as its last commit shows)."""
    if not is_open:
        return "the store is not open"
    if last_commit_error is not None:
        return f"the last commit failed: {last_commit_error}"
    return ""


def _unavailable(exc: BaseException) -> StoreUnavailableError:
    if isinstance(exc, StoreUnavailableError):
        return exc
    failure = StoreUnavailableError(f"commit failed: {exc}")
    failure.__cause__ = exc
    return failure


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
