"""SQLite in WAL mode behind one writer thread that commits concurrent writes together."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import bridge.store.group as group
import bridge.store.migrations as migrations
from bridge.plugin import StoreUnavailableError
from bridge.store.base import Notification
from bridge.store.connection import Connection, Dialect
from bridge.store.group import GroupWriter, Outcome, Pending, Ran
from bridge.store.listeners import Listeners

T = TypeVar("T")

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
        self._group = GroupWriter("store-writer", self._run_batch, self._settled)
        self.commits = 0  # batches committed, for metrics and tests
        self.migrated: list[migrations.Migration] = []  # schema steps open() applied
        self.last_commit_error: str | None = None  # why the last batch failed; None once one works

    @property
    def is_open(self) -> bool:
        return self._group.is_running

    @property
    def where(self) -> str:
        return str(self.path)

    def open_error(self, exc: BaseException) -> StoreOpenError:
        return StoreOpenError(self.path, exc)

    @property
    def problem(self) -> str:
        """Why the store cannot take writes ('' when it can, as far as the last commit shows)."""
        return group.problem(self.is_open, self.last_commit_error)

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
        self._group.start(loop)

    async def maintain(self, work: Callable[[Connection], T]) -> T:
        """Run `work` on the writer's connection between two commits, outside any transaction.

        For what cannot run inside one (an incremental vacuum, a checkpoint): writes wait while
        it runs, so it must be short.
        """
        return await self._group.submit(work, maintenance=True)

    async def close(self) -> None:
        """Finish queued writes, stop the writer and close the file."""
        await self._group.stop()
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
        return await self._group.submit(work, pure=pure)

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

    def _run_batch(self, batch: list[Pending]) -> Ran:
        """On the writer thread: a maintenance unit alone, or a batch committed once."""
        if batch[0].maintenance:
            return Ran([_maintain(self._writer, batch[0])], committed=False)
        return self._commit(batch)

    def _settled(self, error: BaseException | None, ran: Ran | None) -> None:
        if error is not None:
            self.last_commit_error = str(error)
            return
        assert ran is not None
        if ran.committed:
            self.commits += 1
            if ran.wrote:  # a batch that changed nothing proves little about the disk
                self.last_commit_error = None

    def _commit(self, batch: list[Pending]) -> Ran:
        """Run and commit a batch: each work's outcome, and whether any row was written."""
        conn = self._writer
        assert conn is not None
        results: list[Outcome] = []
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
        return Ran(results, wrote=conn.total_changes != changes)


def _maintain(conn: Connection | None, pending: Pending) -> Outcome:
    assert conn is not None
    try:
        return True, pending.work(conn)
    except Exception as exc:
        return False, exc


def _guarded(conn: Connection, pending: Pending) -> Outcome:
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


def _run_pure(conn: Connection, run: list[Pending]) -> list[Outcome]:
    """Run pure works under one savepoint; if one fails, undo them all and run each again in
    its own, so the failure stays its own."""
    conn.execute("SAVEPOINT pure")
    results: list[Outcome] = []
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
