"""The store as history commands read it: the config's `store:` and `contacts:` only, read-only.

They run beside a daemon, often as another user, so they need no secret (the rest of the config
is never validated) and never create a file: SQLite opened `mode=ro` writes nothing.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from bridge.config import load_yaml, read_config_file, validate
from bridge.config.models import StoreConfig
from bridge.rules import Contacts
from bridge.store import (
    Connection,
    StoreOpenError,
    describe_url,
    migrations,
    pg_migrations,
    read_only_database,
)

# The sections history reads; the others are neither validated nor needed.
_SECTIONS = ("store", "contacts")
_PATHS = tuple((section,) for section in _SECTIONS)


class HistoryConfig(BaseModel):
    """The part of the config history reads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store: StoreConfig = StoreConfig()
    contacts: Contacts = Field(default_factory=dict)


def load_sections(path: Path | None) -> HistoryConfig:
    """The `store:` and `contacts:` sections of the config at `path` (defaults without one).

    Raises ConfigError with the problems of these sections only: a key file this user cannot
    read, or an environment variable only the daemon has, is no concern of history.
    """
    if path is None:
        return HistoryConfig()
    document = load_yaml(read_config_file(path), str(path))
    if document.parsed and isinstance(document.data, dict):
        document = dataclasses.replace(
            document,
            data={key: value for key, value in document.data.items() if key in _SECTIONS},
            issues=tuple(issue for issue in document.issues if issue.path[:1] in _PATHS),
        )
    return validate(document, HistoryConfig, base_dir=path.absolute().parent)


class StoreTooOldError(Exception):
    """The store lacks tables history reads: the daemon (or `smsbridge migrate`) adds them."""


@contextmanager
def read_store(store: StoreConfig) -> Iterator[Connection]:
    """A read-only connection on the configured store, SQLite's file or PostgreSQL."""
    conninfo = store.conninfo()
    if conninfo is None:
        with read_only(store.path) as conn:
            yield conn
        return
    with read_only_database(conninfo) as conn:
        found = pg_migrations.version(conn)
        if found < migrations.latest():
            raise StoreTooOldError(
                f"the store {describe_url(conninfo)} is at schema version {found}, older than this "
                f"smsbridge ({migrations.latest()}): start the daemon or run `smsbridge migrate` "
                "first"
            )
        yield conn


@contextmanager
def read_only(path: Path) -> Iterator[Connection]:
    """A read-only connection on the store at `path`; raises StoreOpenError if it cannot be read.

    With a daemon running, its -wal and -shm files exist and the connection reads through them.
    Without them, SQLite would create both even for a read-only connection (files the daemon's
    user might not be able to open), so the file is read as immutable: it has no WAL to see.
    """
    wal = path.with_name(path.name + "-wal")
    shm = path.with_name(path.name + "-shm")
    mode = "mode=ro" if wal.exists() and shm.exists() else "mode=ro&immutable=1"
    try:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?{mode}", uri=True, timeout=5)
    except sqlite3.Error as exc:
        raise StoreOpenError(path, exc) from None
    try:
        conn.row_factory = sqlite3.Row
        try:
            found = migrations.check_version(conn)
        except sqlite3.DatabaseError as exc:
            raise StoreOpenError(path, exc) from None
        if found < migrations.latest():
            raise StoreTooOldError(
                f"the store {path} is at schema version {found}, older than this smsbridge "
                f"({migrations.latest()}): start the daemon or run `smsbridge migrate` first"
            )
        yield conn
    finally:
        conn.close()
