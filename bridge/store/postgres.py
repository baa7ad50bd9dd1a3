"""PostgreSQL behind a bounded pool: the store for several instances sharing one database.

Units of work are synchronous functions of a connection, shared with SQLite's writer thread,
so they run here on pooled psycopg connections in a bounded set of worker threads, one
transaction per unit (PostgreSQL commits concurrent transactions itself: there is no batch to
gather). Rewriting ~30 modules of units as coroutines would buy nothing a thread does not
give, and would fork them from SQLite's. A unit whose transaction PostgreSQL aborts to break a
deadlock (or a serialization failure) is run again a bounded number of times: its changes were
rolled back, and units are written to be run again (SQLite re-runs pure ones too).

What is naturally a coroutine uses psycopg's async API: `notifications()` holds a dedicated
connection in LISTEN and yields as NOTIFYs arrive, with no thread parked on it.

Session state (advisory locks held by migrations, LISTEN) needs a real session: PgBouncer in
transaction mode is not supported.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg
import psycopg.errors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

import bridge.store.pg_migrations as pg_migrations
from bridge.plugin import StoreUnavailableError
from bridge.store.base import Notification
from bridge.store.connection import Connection, Dialect
from bridge.store.migrations import Migration, SchemaTooNewError
from bridge.store.pg_connection import PgConnection, PgRow, row_factory
from bridge.store.sqlite import StoreOpenError

T = TypeVar("T")

# Connections in the pool, and so units running at once. Ingest, the processor, each
# dispatcher and each poller hold one for a transaction at a time.
POOL_SIZE = 10
# A unit aborted by a deadlock or a serialization failure runs at most this often.
ATTEMPTS = 3
# Seconds a unit waits for a pooled connection (all busy, or the server unreachable) before
# the store counts as unavailable: a webhook is answered 503 then, not left hanging.
POOL_WAIT = 5.0
CONNECT_TIMEOUT = 10

_RETRY = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)
# The database, not the unit's SQL, failed: the connection, the server, the disk.
_UNAVAILABLE = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg.errors.DiskFull,
    psycopg.errors.ReadOnlySqlTransaction,
    PoolTimeout,
)


def describe(conninfo: str) -> str:
    """A connection string for people: `postgresql://user@host:port/dbname`, no password."""
    try:
        parts = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "postgresql://(unreadable URL)"
    user = f"{parts['user']}@" if parts.get("user") else ""
    host = str(parts.get("host") or "")
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{host}{port}/{parts.get('dbname') or ''}"


class PostgresOpenError(StoreOpenError):
    """The database cannot be reached or used at start."""

    def __init__(self, where: str, exc: BaseException) -> None:
        Exception.__init__(self, f"cannot use the store {where}: {_reason(exc)}")
        self.path = where  # type: ignore[assignment]
        # A server down or restarting passes; a wrong password or a missing database does not.
        self.transient = isinstance(exc, psycopg.OperationalError) and not _refused(exc)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _refused(exc: BaseException) -> bool:
    text = str(exc)
    return any(
        marker in text
        for marker in ("password authentication failed", "does not exist", "no pg_hba.conf")
    )


class PostgresStore:
    """A PostgreSQL database as the store (`store.url`)."""

    dialect = Dialect.POSTGRESQL

    def __init__(self, conninfo: str, *, pool_size: int = POOL_SIZE) -> None:
        self._conninfo = conninfo
        self._pool_size = pool_size
        self._pool: ConnectionPool[psycopg.Connection[PgRow]] | None = None
        self._executor = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="store-pg")
        self._closing = False
        self.commits = 0
        self.migrated: list[Migration] = []
        self.last_commit_error: str | None = None

    @property
    def where(self) -> str:
        return describe(self._conninfo)

    def open_error(self, exc: BaseException) -> StoreOpenError:
        return PostgresOpenError(self.where, exc)

    @property
    def is_open(self) -> bool:
        return self._pool is not None and not self._closing

    @property
    def problem(self) -> str:
        if not self.is_open:
            return "the store is not open"
        if self.last_commit_error is not None:
            return f"the last commit failed: {self.last_commit_error}"
        return ""

    async def open(self) -> None:
        """Bring the schema up to date (under an advisory lock) and open the pool.

        Raises SchemaTooNewError when the schema says this code is too old, PostgresOpenError
        when the database cannot be reached or used.
        """
        loop = asyncio.get_running_loop()
        try:
            self.migrated = await loop.run_in_executor(self._executor, self._migrate)
            pool: ConnectionPool[psycopg.Connection[PgRow]] = ConnectionPool(
                self._conninfo,
                min_size=1,
                max_size=self._pool_size,
                open=False,
                kwargs={"row_factory": row_factory, "connect_timeout": CONNECT_TIMEOUT},
                connection_class=psycopg.Connection[PgRow],
                name="smsbridge-store",
            )
            await loop.run_in_executor(self._executor, lambda: pool.open(wait=True))
        except SchemaTooNewError as exc:
            raise SchemaTooNewError(f"{self.where}: {exc}") from None
        except (psycopg.Error, PoolTimeout) as exc:
            self._executor.shutdown(wait=False)
            raise PostgresOpenError(self.where, exc) from exc
        self._pool = pool

    def _migrate(self) -> list[Migration]:
        with psycopg.connect(
            self._conninfo,
            autocommit=True,
            row_factory=row_factory,
            connect_timeout=CONNECT_TIMEOUT,
        ) as raw:
            return pg_migrations.upgrade(PgConnection(raw))

    async def close(self) -> None:
        """Let running units finish, then close the pool."""
        self._closing = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._executor.shutdown, True)
        if self._pool is not None:
            await loop.run_in_executor(None, self._pool.close)
            self._pool = None

    async def write(self, work: Callable[[Connection], T], *, pure: bool = False) -> T:
        """Run `work` in its own transaction; returns once it is committed.

        `pure` changes nothing here (every unit has its own transaction). Raises
        StoreUnavailableError when the database cannot be reached or cannot commit, and
        whatever else `work` raised (its changes are rolled back).
        """
        return await self._submit(self._transaction, work)

    async def read(self, work: Callable[[Connection], T]) -> T:
        """Run `work` outside a transaction: each statement sees the last committed state."""
        return await self._submit(self._autocommit, work)

    async def maintain(self, work: Callable[[Connection], T]) -> T:
        """Run `work` outside any transaction (PostgreSQL's own autovacuum does the rest)."""
        return await self._submit(self._autocommit, work)

    async def notify(self, channel: str, payload: str = "") -> None:
        """Wake every instance listening on `channel` (delivered when this commits)."""
        await self.write(
            lambda conn: conn.execute("SELECT pg_notify(?, ?)", (channel, payload)).fetchall()
        )

    async def notifications(self, *channels: str) -> AsyncIterator[Notification]:
        """NOTIFYs on these channels, from a connection of its own, until the caller stops.

        A lost connection raises (psycopg.OperationalError): the caller's supervisor restarts
        it, and polls meanwhile.
        """
        conn = await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT
        )
        try:
            for channel in channels:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            async for notify in conn.notifies():
                yield Notification(notify.channel, notify.payload)
        finally:
            await conn.close()

    async def _submit(
        self,
        runner: Callable[[Callable[[Connection], T]], T],
        work: Callable[[Connection], T],
    ) -> T:
        if not self.is_open:
            raise StoreUnavailableError("the store is not open")
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._executor, runner, work)
        except StoreUnavailableError as exc:
            self.last_commit_error = str(exc)
            raise
        except RuntimeError as exc:  # the executor was shut down: the store is closing
            if not self._closing:
                raise
            raise StoreUnavailableError("the store is not open") from exc
        if runner == self._transaction:
            self.commits += 1
            self.last_commit_error = None
        return result

    def _transaction(self, work: Callable[[Connection], T]) -> T:
        """In a worker thread: run `work` and commit, again after a deadlock (bounded)."""
        pool = self._pool
        assert pool is not None
        for attempt in range(1, ATTEMPTS + 1):
            try:
                with pool.connection(timeout=POOL_WAIT) as raw:
                    try:
                        result = work(PgConnection(raw))
                    except BaseException:
                        _rollback(raw)
                        raise
                    raw.commit()
                    return result
            except _RETRY:
                if attempt == ATTEMPTS:
                    raise
            except _UNAVAILABLE as exc:
                raise StoreUnavailableError(f"commit failed: {_reason(exc)}") from exc
        raise AssertionError("unreachable")

    def _autocommit(self, work: Callable[[Connection], T]) -> T:
        pool = self._pool
        assert pool is not None
        try:
            with pool.connection(timeout=POOL_WAIT) as raw:
                raw.autocommit = True
                try:
                    return work(PgConnection(raw))
                finally:
                    if not raw.broken:
                        raw.autocommit = False
        except _UNAVAILABLE as exc:
            raise StoreUnavailableError(f"the store cannot be read: {_reason(exc)}") from exc


def _rollback(raw: psycopg.Connection[Any]) -> None:
    if not raw.closed and not raw.broken:
        raw.rollback()
