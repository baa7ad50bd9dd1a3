"""Running units of work on pooled psycopg connections (in a worker thread): one unit in its own
transaction, several pure ones in one, or one outside any transaction.

A unit that PostgreSQL aborts to break a deadlock (or for a serialization failure) is run
again, a bounded number of times: its changes were rolled back, and units are written to be
run again (SQLite re-runs pure ones too).
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
# Seconds a unit waits for a pooled connection (all busy, or the server unreachable) before
# the store counts as unavailable: a webhook is answered 503 then, not left hanging.
POOL_WAIT = 5.0

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
    """Run `work` and commit; again after a deadlock (bounded)."""
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
        except RETRY:
            if attempt == ATTEMPTS:
                raise
        except UNAVAILABLE as exc:
            raise StoreUnavailableError(f"commit failed: {reason(exc)}") from exc
    raise AssertionError("unreachable")


def together(pool: Pool, works: Sequence[Callable[[Connection], Any]]) -> list[Outcome]:
    """Run pure units in one transaction and commit once (group commit).

    When one of them raises, the transaction is rolled back and each runs again in its own,
    so a failure stays its own. Raises StoreUnavailableError when the database is.
    """
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with pool.connection(timeout=POOL_WAIT) as raw:
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
                raw.commit()
                return [(True, value) for value in results]
        except RETRY:
            if attempt == ATTEMPTS:
                break
        except UNAVAILABLE as exc:
            raise StoreUnavailableError(f"commit failed: {reason(exc)}") from exc
    return [alone(pool, work) for work in works]


def alone(pool: Pool, work: Callable[[Connection], Any]) -> Outcome:
    """`transaction`, its outcome as a value (a StoreUnavailableError too)."""
    try:
        return True, transaction(pool, work)
    except Exception as exc:
        return False, exc


def autocommit(pool: Pool, work: Callable[[Connection], T]) -> T:
    """Run `work` outside a transaction: each statement sees the last committed state."""
    try:
        with pool.connection(timeout=POOL_WAIT) as raw:
            raw.autocommit = True
            try:
                return work(PgConnection(raw))
            finally:
                if not raw.broken:
                    raw.autocommit = False
    except UNAVAILABLE as exc:
        raise StoreUnavailableError(f"the store cannot be read: {reason(exc)}") from exc


def _rollback(raw: psycopg.Connection[Any]) -> None:
    if not raw.closed and not raw.broken:
        raw.rollback()
