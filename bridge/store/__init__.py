"""The durable store: one interface over SQLite (the default) and PostgreSQL, its versioned
schema, and small ledgers."""

from bridge.store import ledger, migrations, pg_migrations, vacuum
from bridge.store.base import Notification, Store
from bridge.store.connection import Connection, Dialect, Row, dialect
from bridge.store.factory import describe_url, make_store, read_only_database
from bridge.store.migrations import SchemaTooNewError
from bridge.store.replay import StoreReplay
from bridge.store.schema import SCHEMA
from bridge.store.sqlite import SqliteStore, StoreOpenError

__all__ = [
    "SCHEMA",
    "Connection",
    "Dialect",
    "Notification",
    "Row",
    "SchemaTooNewError",
    "SqliteStore",
    "Store",
    "StoreOpenError",
    "StoreReplay",
    "describe_url",
    "dialect",
    "ledger",
    "make_store",
    "migrations",
    "pg_migrations",
    "read_only_database",
    "vacuum",
]
