"""The durable store: SQLite behind one writer thread, its schema, small ledgers and leases."""

from bridge.store import dialect, instances, leases, ledger, migrations, vacuum
from bridge.store.connection import Connection, Row
from bridge.store.leases import Lease, LeaseLostError
from bridge.store.lockfile import StoreLock, StoreLockedError
from bridge.store.migrations import SchemaTooNewError
from bridge.store.replay import StoreReplay
from bridge.store.schema import SCHEMA
from bridge.store.sqlite import Store, StoreOpenError

__all__ = [
    "SCHEMA",
    "Connection",
    "Lease",
    "LeaseLostError",
    "Row",
    "SchemaTooNewError",
    "Store",
    "StoreLock",
    "StoreLockedError",
    "StoreOpenError",
    "StoreReplay",
    "dialect",
    "instances",
    "leases",
    "ledger",
    "migrations",
    "vacuum",
]
