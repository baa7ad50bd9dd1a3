"""SQLite in WAL mode behind one writer thread that commits concurrent writes together."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import sqlite3
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import bridge.store.migrations as migrations
from bridge.plugin import StoreUnavailableError
from bridge.store.base import Notification
from bridge.store.connection import Connection, Dialect
from bridge.store.listeners import Listeners

T = TypeVar("T")
Work = Callable[[Connection], Any]

# A batch bigger than this would hold back the first writer's answer for too long.
MAX_BATCH = 512

# Errors that say the file cannot take writes now (full, read-only, I/O, locked by another
# process past busy_timeout), not that one write's SQL is wrong: they fail the whole batch.
_STORAGE_FAULTS = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
        sqlite3.SQLITE_NOTADB,
    }
)


def _storage_fault(exc: BaseException) -> bool:
    """True when an error is about the file or disk, not about one write's SQL."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.Error) and code is not None and code & 0xFF in _STORAGE_FAULTS


class StoreOpenError(Exception):
    """The store cannot be opened or written at start: a problem of the host, not of a request.

    `transient` is True when it may pass by itself (a full disk), False when a person must act
    (a read-only file system, missing permissions, not a database).
    """

    def __init__(self, path: Path, exc: BaseException) -> None:
        reason, self.transient = _diagnose(path, exc.__cause__ or exc)
        self.path = path
        super().__init__(f"cannot use the store {path}: {reason}")


# OS errors that explain why SQLite could not open or write a file.
_TELLING = frozenset(
    (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.ENOENT)
)
_FULL = frozenset((errno.ENOSPC, errno.EDQUOT))


def _diagnose(path: Path, exc: BaseException) -> tuple[str, bool]:
    """The operating system's reason where it gives one (SQLite's text hides it), and whether
    it is a full disk."""
    if isinstance(exc, OSError):
        return exc.strerror or str(exc), exc.errno in _FULL
    folder = path if path.is_dir() else path.parent
    with contextlib.suppress(OSError):
        if os.statvfs(folder).f_bavail == 0:
            return f"{os.strerror(errno.ENOSPC)} ({exc})", True
    try:  # ask the file system directly: can this file (or, if missing, its folder) be written?
        if path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND))
        else:
            os.close(os.open(folder, os.O_TMPFILE | os.O_WRONLY))
    except OSError as os_exc:
        if os_exc.errno in _TELLING:
            return f"{os_exc.strerror} ({exc})", os_exc.errno in _FULL
    code = getattr(exc, "sqlite_errorcode", None)
    return str(exc), code is not None and code & 0xFF == sqlite3.SQLITE_FULL


@dataclass(slots=True)
class _Pending:
    work: Work
    future: asyncio.Future[Any]
    pure: bool = False  # no effect outside the connection: may run again, needs no savepoint
    maintenance: bool = False  # runs alone, outside any transaction


# A WAL file that a burst grew is cut back to this when it restarts, not kept at its peak.
WAL_SIZE_LIMIT = 16 * 1024 * 1024


def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.row_factory = sqlite3.Row
    if conn.execute("PRAGMA page_count").fetchone()[0] == 0:
        # A new file: only now, before WAL mode writes its header and before the first table,
        # can it be made to hand freed pages back (retention's incremental vacuum).
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
    # FULL: a commit is on disk when it returns, so an acknowledged webhook survives power loss.
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA foreign_keys=ON")
    # A batch's savepoint needs a statement journal: in memory, not a temporary file opened,
    # written and unlinked at every commit (strace showed one per commit).
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


class SqliteStore:
    """One SQLite file: writes are queued and committed in batches (group commit).

    One writer thread drains everything queued, runs it in one transaction and commits once;
    each caller's future resolves only after that commit is durable, all of a batch's futures
    with one wake-up of the event loop. A failing function rolls back alone: each runs in its
    own savepoint, except `pure` ones, which share one savepoint per run of them and are run
    again one by one (each in its own) only when one of them fails.
    """

    dialect = Dialect.SQLITE

    def __init__(self, path: Path, *, synchronous: str = "FULL") -> None:
        self.path = path
        self._synchronous = synchronous
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        # One process on the file: notifications go straight to this process's listeners.
        self._listeners = Listeners()
        self._reader_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer")
        self._reads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-reader")
        self._pending: deque[_Pending] = deque()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._stopped: asyncio.Future[None] | None = None
        self.commits = 0  # batches committed, for metrics and tests
        self.migrated: list[migrations.Migration] = []  # schema steps open() applied
        self.last_commit_error: str | None = None  # why the last batch failed; None once one works

    @property
    def is_open(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    @property
    def where(self) -> str:
        return str(self.path)

    def open_error(self, exc: BaseException) -> StoreOpenError:
        return StoreOpenError(self.path, exc)

    @property
    def problem(self) -> str:
        """Why the store cannot take writes ('' when it can, as far as the last commit shows)."""
        if not self.is_open:
            return "the store is not open"
        if self.last_commit_error is not None:
            return f"the last commit failed: {self.last_commit_error}"
        return ""

    async def open(self) -> None:
        """Create the file if needed, bring its schema up to date, and start the writer.

        Raises SchemaTooNewError (and opens nothing) when a newer smsbridge wrote the file.
        """
        loop = asyncio.get_running_loop()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._writer = await loop.run_in_executor(
                self._executor, _connect, self.path, self._synchronous
            )
            try:
                self.migrated = await loop.run_in_executor(
                    self._executor, migrations.upgrade, self._writer
                )
            except migrations.SchemaTooNewError as exc:
                raise migrations.SchemaTooNewError(f"{self.path}: {exc}") from None
            self._reader = await loop.run_in_executor(
                self._reads, _connect, self.path, self._synchronous
            )
        except BaseException:
            await self.close()
            raise
        self._loop = loop
        self._stopped = loop.create_future()
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()

    async def maintain(self, work: Callable[[Connection], T]) -> T:
        """Run `work` on the writer's connection between two commits, outside any transaction.

        For what cannot run inside one (an incremental vacuum, a checkpoint): writes wait while
        it runs, so it must be short.
        """
        return await self._enqueue(work, pure=False, maintenance=True)

    async def close(self) -> None:
        """Finish queued writes, stop the writer and close the file."""
        if self._thread is not None and self._stopped is not None:
            with self._wake:
                self._stopping = True
                self._wake.notify()
            await asyncio.shield(self._stopped)
            self._thread.join()
        loop = asyncio.get_running_loop()
        for conn, executor in ((self._writer, self._executor), (self._reader, self._reads)):
            if conn is not None:
                await loop.run_in_executor(executor, conn.close)
        self._writer = self._reader = None
        self._executor.shutdown(wait=True)
        self._reads.shutdown(wait=True)

    async def write(self, work: Callable[[Connection], T], *, pure: bool = False) -> T:
        """Run `work` in a write transaction; returns once its effects are committed to disk.

        `pure` says that `work` has no effect outside the connection (it may be run twice) and
        hardly ever fails: it then costs no savepoint of its own.

        Raises StoreUnavailableError when the store is closed or the batch could not be
        committed (a full or read-only disk, raised by the commit or by any work in the batch),
        and whatever else `work` itself raised (its changes are rolled back, the batch's are not).
        """
        return await self._enqueue(work, pure=pure, maintenance=False)

    async def notify(self, channel: str, payload: str = "") -> None:
        """Wake this process's listeners on `channel` (no other process shares the file)."""
        self._listeners.notify(channel, payload)

    def notifications(self, *channels: str) -> AsyncIterator[Notification]:
        """What `notify` sends on these channels, until the caller stops iterating."""
        return self._listeners.notifications(*channels)

    async def read(self, work: Callable[[Connection], T]) -> T:
        """Run `work` on the read connection (it sees the last committed state)."""
        if self._reader is None:
            raise StoreUnavailableError("the store is not open")
        reader = self._reader

        def run() -> T:
            with self._reader_lock:
                return work(reader)

        return await asyncio.get_running_loop().run_in_executor(self._reads, run)

    async def _enqueue(
        self, work: Callable[[Connection], T], *, pure: bool, maintenance: bool
    ) -> T:
        if not self.is_open or self._loop is None:
            raise StoreUnavailableError("the store is not open")
        future: asyncio.Future[T] = self._loop.create_future()
        with self._wake:
            if self._stopping:
                raise StoreUnavailableError("the store is not open")
            self._pending.append(_Pending(work, future, pure, maintenance))
            if len(self._pending) == 1:
                self._wake.notify()
        return await future

    def _take(self) -> list[_Pending] | None:
        """The next batch (a maintenance item comes alone); None once stopped and drained."""
        with self._wake:
            while not self._pending:
                if self._stopping:
                    return None
                self._wake.wait()
            if self._pending[0].maintenance:
                return [self._pending.popleft()]
            batch: list[_Pending] = []
            while self._pending and len(batch) < MAX_BATCH and not self._pending[0].maintenance:
                batch.append(self._pending.popleft())
            return batch

    def _run(self) -> None:
        """The writer thread: batches run and commit here; the loop is woken once a batch."""
        assert self._loop is not None
        assert self._stopped is not None
        loop, stopped = self._loop, self._stopped
        try:
            while (batch := self._take()) is not None:
                try:
                    if batch[0].maintenance:
                        outcome: Any = ([self._maintain(batch[0])], False)
                    else:
                        outcome = self._commit(batch)
                except Exception as exc:  # the commit itself failed: nothing in it is stored
                    outcome = exc
                loop.call_soon_threadsafe(self._settle, batch, outcome)
        finally:
            with self._wake:
                self._stopping = True
                left = list(self._pending)
                self._pending.clear()
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                if left:  # the thread died: nobody may wait for ever
                    failure = StoreUnavailableError("the store's writer stopped")
                    loop.call_soon_threadsafe(self._settle, left, failure)
                loop.call_soon_threadsafe(_resolve, stopped)

    def _maintain(self, pending: _Pending) -> tuple[bool, Any]:
        assert self._writer is not None
        try:
            return True, pending.work(self._writer)
        except Exception as exc:
            return False, exc

    def _settle(self, batch: list[_Pending], outcome: Any) -> None:
        """On the loop: resolve a batch's futures with its outcome."""
        if isinstance(outcome, BaseException):
            self.last_commit_error = str(outcome)
            for pending in batch:
                if not pending.future.done():
                    failure = StoreUnavailableError(f"commit failed: {outcome}")
                    failure.__cause__ = outcome
                    pending.future.set_exception(failure)
            return
        results, wrote = outcome
        if not batch[0].maintenance:
            self.commits += 1
            if wrote:  # a batch that changed nothing proves little about the disk
                self.last_commit_error = None
        for pending, (ok, value) in zip(batch, results, strict=True):
            if pending.future.done():
                continue
            if ok:
                pending.future.set_result(value)
            else:
                pending.future.set_exception(value)

    def _commit(self, batch: list[_Pending]) -> tuple[list[tuple[bool, Any]], bool]:
        """Run and commit a batch: each work's outcome, and whether any row was written."""
        conn = self._writer
        assert conn is not None
        results: list[tuple[bool, Any]] = []
        changes = conn.total_changes
        conn.execute("BEGIN IMMEDIATE")
        try:
            start = 0
            while start < len(batch):
                if not batch[start].pure:
                    results.append(_guarded(conn, batch[start]))
                    start += 1
                    continue
                end = start
                while end < len(batch) and batch[end].pure:
                    end += 1
                results.extend(_run_pure(conn, batch[start:end]))
                start = end
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        return results, conn.total_changes != changes


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _guarded(conn: Connection, pending: _Pending) -> tuple[bool, Any]:
    """Run one work in its own savepoint: if it fails, only its changes are rolled back."""
    conn.execute("SAVEPOINT work")
    try:
        value = pending.work(conn)
    except Exception as exc:
        if _storage_fault(exc):
            raise  # the file cannot take this batch; SQLite may have rolled it back
        conn.execute("ROLLBACK TO work")
        conn.execute("RELEASE work")
        return False, exc
    conn.execute("RELEASE work")
    return True, value


def _run_pure(conn: Connection, run: list[_Pending]) -> list[tuple[bool, Any]]:
    """Run pure works under one savepoint; if one fails, undo them all and run each again in
    its own, so the failure stays its own."""
    conn.execute("SAVEPOINT pure")
    results: list[tuple[bool, Any]] = []
    try:
        for pending in run:
            results.append((True, pending.work(conn)))
    except Exception as exc:
        if _storage_fault(exc):
            raise
        conn.execute("ROLLBACK TO pure")
        conn.execute("RELEASE pure")
        return [_guarded(conn, pending) for pending in run]
    conn.execute("RELEASE pure")
    return results
