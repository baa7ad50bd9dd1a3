"""The durable store: SQLite behind one writer thread, its versioned schema, and small ledgers."""

from bridge.store import ledger, migrations, vacuum
from bridge.store.connection import Connection, Row
from bridge.store.migrations import SchemaTooNewError
from bridge.store.replay import StoreReplay
from bridge.store.schema import SCHEMA
from bridge.store.sqlite import Store, StoreOpenError

__all__ = [
    "SCHEMA",
    "Connection",
    "Row",
    "SchemaTooNewError",
    "Store",
    "StoreOpenError",
    "StoreReplay",
    "ledger",
    "migrations",
    "vacuum",
]
