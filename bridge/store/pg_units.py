"""Running units of work on pooled psycopg connections (in a worker thread): one unit in its own
transaction, several pure ones in one, or one outside any transaction.

A unit that PostgreSQL aborts to break a deadlock (or for a serialization failure), or whose
connection is lost before its commit (a restarted server, a killed backend, an idle connection
dropped by a firewall), is run again on a fresh connection, a bounded number of times: the
server rolled its changes back, and units are written to be run again (SQLite re-runs pure
ones too). A connection lost during the commit is not retried: whether it committed is unknown.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
import psycopg.errors
from psycopg_pool import ConnectionPool, PoolTimeout

from bridge.plugin import StoreUnavailableError
from bridge.store.connection import Connection
from bridge.store.pg_connection import PgConnection

T = TypeVar("T")
Pool = ConnectionPool[psycopg.Connection[Any]]
Outcome = tuple[bool, Any]  # (True, value) or (False, the exception the unit raised)

# A unit aborted by a deadlock or a serialization failure runs at most this often.
ATTEMPTS = 3

RETRY = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)
# The database, not the unit's SQL, failed: the connection, the server, the disk.
UNAVAILABLE = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg.errors.ReadOnlySqlTransaction,
    PoolTimeout,
)


def reason(exc: BaseException) -> str:
    """The first line of an error (psycopg's can go on with context lines)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def transaction(pool: Pool, work: Callable[[Connection], T]) -> T:
    """Run `work` and commit; again after a deadlock, or when the connection was lost before
    the commit (bounded)."""
    for attempt in range(1, ATTEMPTS + 1):
        committing = False
        try:
            with pool.connection() as raw:
                try:
                    result = work(PgConnection(raw))
                except BaseException:
                    _rollback(raw)
                    raise
                committing = True
                raw.commit()
                return result
        except RETRY:
            if attempt == ATTEMPTS:
                raise
        except UNAVAILABLE as exc:
            if committing or not _lost(exc) or attempt == ATTEMPTS:
                raise StoreUnavailableError(f"commit failed: {reason(exc)}") from exc
            pool.check()  # its other idle connections were probably lost too
    raise AssertionError("unreachable")


def _lost(exc: BaseException) -> bool:
    """The connection was lost (a restarted server, a killed backend), not the statement: the
    server rolls back what the transaction did, and a fresh connection may work."""
    if not isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return False
    state = exc.sqlstate or ""
    # No state: the socket went; 08: connection exceptions; 57P: the server shut the session.
    return state == "" or state.startswith(("08", "57P"))


def together(pool: Pool, works: Sequence[Callable[[Connection], Any]]) -> list[Outcome]:
    """Run pure units in one transaction and commit once (group commit).

    When one of them raises, the transaction is rolled back and each runs again in its own,
    so a failure stays its own. Raises StoreUnavailableError when the database is.
    """
    for attempt in range(1, ATTEMPTS + 1):
        committing = False
        try:
            with pool.connection() as raw:
                conn = PgConnection(raw)
                try:
                    results = [work(conn) for work in works]
                except RETRY:
                    _rollback(raw)
                    raise
                except UNAVAILABLE:
                    raise
                except Exception:
                    _rollback(raw)
                    break
                committing = True
                raw.commit()
                return [(True, value) for value in results]
        except RETRY:
            if attempt == ATTEMPTS:
                break
        except UNAVAILABLE as exc:
            if committing or not _lost(exc) or attempt == ATTEMPTS:
                raise StoreUnavailableError(f"commit failed: {reason(exc)}") from exc
            pool.check()  # its other idle connections were probably lost too
    return [alone(pool, work) for work in works]


def alone(pool: Pool, work: Callable[[Connection], Any]) -> Outcome:
    """`transaction`, its outcome as a value (a StoreUnavailableError too)."""
    try:
        return True, transaction(pool, work)
    except Exception as exc:
        return False, exc


def autocommit(pool: Pool, work: Callable[[Connection], T]) -> T:
    """Run `work` outside a transaction: each statement sees the last committed state. Run
    again once on a fresh connection when the first one was lost."""
    for attempt in range(1, 3):
        try:
            with pool.connection() as raw:
                raw.autocommit = True
                try:
                    return work(PgConnection(raw))
                finally:
                    if not raw.broken:
                        raw.autocommit = False
        except UNAVAILABLE as exc:
            if not _lost(exc) or attempt == 2:
                raise StoreUnavailableError(f"the store cannot be read: {reason(exc)}") from exc
            pool.check()
    raise AssertionError("unreachable")


def _rollback(raw: psycopg.Connection[Any]) -> None:
    if not raw.closed and not raw.broken:
        raw.rollback()
