"""PostgreSQL behind a bounded pool: the store for several instances sharing one database.

Units of work are synchronous functions of a connection, shared with SQLite's writer thread,
so they run here on pooled psycopg connections in a bounded set of worker threads
(`bridge.store.pg_units`): rewriting ~30 modules of units as coroutines would buy nothing a
thread does not give, and would fork them from SQLite's. A unit has a transaction of its own,
except pure ones (ingest's inbox row, a replay claim): those queued together are run by one
writer thread in one transaction, as SQLite's group commit does, because a transaction per
webhook costs the daemon several times the CPU of the request itself.

What is naturally a coroutine uses psycopg's async API: `notifications()` holds a dedicated
connection in LISTEN and yields as NOTIFYs arrive, with no thread parked on it.

Session state (advisory locks held by migrations, LISTEN) needs a real session: PgBouncer in
transaction mode is not supported.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

import bridge.store.group as group
import bridge.store.pg_migrations as pg_migrations
import bridge.store.pg_units as units
from bridge.plugin import StoreUnavailableError
from bridge.store.base import Notification
from bridge.store.connection import Connection, Dialect
from bridge.store.group import GroupWriter, Pending, Ran
from bridge.store.migrations import Migration, SchemaTooNewError
from bridge.store.pg_connection import PgConnection, PgRow, row_factory
from bridge.store.sqlite import StoreOpenError

T = TypeVar("T")

# Connections in the pool. Units running at once hold one each: ingest's writer, the
# processor, each dispatcher and poller, reads.
POOL_SIZE = 10
# Seconds a unit waits for a pooled connection (all busy, or the server unreachable) before
# the store counts as unavailable: a webhook is answered 503 then, not left hanging.
POOL_WAIT = 5.0
CONNECT_TIMEOUT = 10


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
        Exception.__init__(self, f"cannot use the store {where}: {units.reason(exc)}")
        self.path = where  # type: ignore[assignment]
        # A server down or restarting passes; a wrong password or a missing database does not.
        self.transient = isinstance(exc, psycopg.OperationalError) and not _refused(exc)


def _refused(exc: BaseException) -> bool:
    text = str(exc)
    return any(
        marker in text
        for marker in ("password authentication failed", "does not exist", "no pg_hba.conf")
    )


@contextlib.contextmanager
def read_only(conninfo: str) -> Iterator[Connection]:
    """A read-only connection of its own (the history commands); PostgresOpenError if the
    database cannot be reached."""
    try:
        raw = psycopg.connect(
            conninfo,
            autocommit=True,
            row_factory=row_factory,
            connect_timeout=CONNECT_TIMEOUT,
            options="-c default_transaction_read_only=on",
        )
    except psycopg.Error as exc:
        raise PostgresOpenError(describe(conninfo), exc) from None
    with raw:
        yield PgConnection(raw)


class PostgresStore:
    """A PostgreSQL database as the store (`store.url`)."""

    dialect = Dialect.POSTGRESQL

    def __init__(
        self, conninfo: str, *, pool_size: int = POOL_SIZE, pool_wait: float = POOL_WAIT
    ) -> None:
        self._conninfo = conninfo
        self._pool_size = pool_size
        self._pool_wait = pool_wait
        self._pool: ConnectionPool[psycopg.Connection[PgRow]] | None = None
        # Units running at once (each on a pooled connection); the group writer is apart.
        self._executor = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="store-pg")
        self._group = GroupWriter("store-pg-writer", self._run_batch, self._settled)
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
        return self._pool is not None and not self._closing and self._group.is_running

    @property
    def problem(self) -> str:
        """Why the store cannot take writes ('' when it can, as far as the last commit shows)."""
        return group.problem(self.is_open, self.last_commit_error)

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
                timeout=self._pool_wait,  # how long pool.connection() waits
                open=False,
                kwargs={"row_factory": row_factory, "connect_timeout": CONNECT_TIMEOUT},
                connection_class=psycopg.Connection[PgRow],
                name="smsbridge-store",
            )
            await loop.run_in_executor(self._executor, lambda: pool.open(wait=True))
        except SchemaTooNewError as exc:
            self._executor.shutdown(wait=False)
            raise SchemaTooNewError(f"{self.where}: {exc}") from None
        except (psycopg.Error, PoolTimeout) as exc:
            self._executor.shutdown(wait=False)
            raise PostgresOpenError(self.where, exc) from exc
        self._pool = pool
        self._group.start(loop)

    def _migrate(self) -> list[Migration]:
        with psycopg.connect(
            self._conninfo,
            autocommit=True,
            row_factory=row_factory,
            connect_timeout=CONNECT_TIMEOUT,
        ) as raw:
            return pg_migrations.upgrade(PgConnection(raw))

    async def close(self) -> None:
        """Let queued and running units finish, then close the pool."""
        loop = asyncio.get_running_loop()
        self._closing = True
        await self._group.stop()
        await loop.run_in_executor(None, self._executor.shutdown, True)
        if self._pool is not None:
            await loop.run_in_executor(None, self._pool.close)
            self._pool = None

    async def write(self, work: Callable[[Connection], T], *, pure: bool = False) -> T:
        """Run `work` in a transaction; returns once it is committed.

        `pure` says that `work` has no effect outside the connection (it may be run twice):
        it is then committed together with the other pure units queued meanwhile. Raises
        StoreUnavailableError when the database cannot be reached or cannot commit, and
        whatever else `work` raised (its changes are rolled back).
        """
        if not pure:
            return await self._submit(units.transaction, work, commits=True)
        if not self.is_open:
            raise StoreUnavailableError("the store is not open")
        return await self._group.submit(work, pure=True)

    async def read(self, work: Callable[[Connection], T]) -> T:
        """Run `work` outside a transaction: each statement sees the last committed state."""
        return await self._submit(units.autocommit, work, commits=False)

    async def maintain(self, work: Callable[[Connection], T]) -> T:
        """Run `work` outside any transaction (PostgreSQL's own autovacuum does the rest)."""
        return await self._submit(units.autocommit, work, commits=False)

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
        runner: Callable[[units.Pool, Callable[[Connection], T]], T],
        work: Callable[[Connection], T],
        *,
        commits: bool,
    ) -> T:
        pool = self._pool
        if pool is None or self._closing:
            raise StoreUnavailableError("the store is not open")
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._executor, runner, pool, work)
        except StoreUnavailableError as exc:
            self.last_commit_error = str(exc)
            raise
        except RuntimeError as exc:  # the executor was shut down: the store is closing
            if not self._closing:
                raise
            raise StoreUnavailableError("the store is not open") from exc
        if commits:
            self.commits += 1
            self.last_commit_error = None
        return result

    # --- the group writer (a thread) --------------------------------------------------------

    def _run_batch(self, batch: list[Pending]) -> Ran:
        """On the writer thread: pure units in one transaction, committed once."""
        assert self._pool is not None
        return Ran(units.together(self._pool, [pending.work for pending in batch]))

    def _settled(self, error: BaseException | None, ran: Ran | None) -> None:
        if error is not None:
            self.last_commit_error = str(error)
            return
        self.commits += 1
        self.last_commit_error = None
