"""The durable store: one interface over SQLite (the default) and PostgreSQL, its versioned
schema, small ledgers, durable timers, and the leases and instance registry instances share."""

from bridge.store import instances, leases, ledger, migrations, pg_migrations, timers, vacuum
from bridge.store.base import Notification, Store
from bridge.store.coalesce import Coalescer
from bridge.store.connection import Connection, Dialect, Row, dialect
from bridge.store.factory import describe_url, make_store, read_only_database
from bridge.store.leases import Lease, LeaseLostError
from bridge.store.lockfile import StoreLock, StoreLockedError
from bridge.store.migrations import SchemaTooNewError
from bridge.store.replay import StoreReplay
from bridge.store.schema import SCHEMA
from bridge.store.sqlite import SqliteStore, StoreOpenError

__all__ = [
    "SCHEMA",
    "Coalescer",
    "Connection",
    "Dialect",
    "Lease",
    "LeaseLostError",
    "Notification",
    "Row",
    "SchemaTooNewError",
    "SqliteStore",
    "Store",
    "StoreLock",
    "StoreLockedError",
    "StoreOpenError",
    "StoreReplay",
    "describe_url",
    "dialect",
    "instances",
    "leases",
    "ledger",
    "make_store",
    "migrations",
    "pg_migrations",
    "read_only_database",
    "timers",
    "vacuum",
]
