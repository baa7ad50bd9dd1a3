"""The durable store: SQLite behind one writer thread, its versioned schema, and small ledgers."""

from bridge.store.migrations import SchemaTooNewError
from bridge.store.replay import StoreReplay
from bridge.store.sqlite import Store

__all__ = ["SchemaTooNewError", "Store", "StoreReplay"]
