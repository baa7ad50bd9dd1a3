"""Opening the daemon's store: the backend the config names, proven writable before anything
else starts, and (on SQLite) held by this daemon alone."""

from __future__ import annotations

import sqlite3
from contextlib import AsyncExitStack

from bridge.config.models import StoreConfig
from bridge.plugin import StoreUnavailableError
from bridge.store import Store, StoreLock, StoreOpenError, leases, ledger, make_store


async def open_store(config: StoreConfig, stack: AsyncExitStack, started: str) -> Store:
    """Open the store and commit once: a store that cannot be written fails the start.

    Closed (and its lock released) with `stack`. Raises StoreOpenError, or StoreLockedError
    when another daemon runs on the same SQLite file."""
    url = config.conninfo()
    if not url:  # one daemon per SQLite file; PostgreSQL takes several
        lock = StoreLock(config.path)
        lock.acquire()
        stack.callback(lock.release)
    store = make_store(config.path, url)
    stack.push_async_callback(store.close)
    try:
        await store.open()
        # A real write and commit, so a read-only or full disk shows now, not at the first
        # webhook; the value tells an operator when the daemon last started.
        await store.write(lambda conn: ledger.put_setting(conn, "daemon.started_at", started))
        if not url:
            # The file lock proves no other daemon is alive on this file: the leases a killed
            # one held end now rather than holding up this start (on PostgreSQL they run out).
            await store.write(leases.expire_all)
    except StoreOpenError:
        raise
    except (OSError, sqlite3.Error, StoreUnavailableError) as exc:
        raise store.open_error(exc) from exc
    return store
