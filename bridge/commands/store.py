"""`smsbridge migrate`: bring the store's schema up to date, and turn on SQLite's incremental
vacuum."""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

from bridge.commands.common import EXIT_CONFIG, EXIT_OK, EXIT_REFUSED, add_common, load
from bridge.store import (
    SqliteStore,
    Store,
    StoreOpenError,
    make_store,
    migrations,
    pg_migrations,
    vacuum,
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `migrate`."""
    migrate = subparsers.add_parser(
        "migrate",
        help="bring the store's schema up to date (stop the daemon first)",
        description=(
            "Apply the schema steps the store file lacks (the daemon does this too when it "
            "starts), and turn on incremental vacuum for a file made before it was the default: "
            "that takes one full VACUUM, which rewrites the file and needs as much free disk "
            "again. Stop the daemon first: its writes would wait for the VACUUM. On PostgreSQL "
            "(store.url) the steps are applied under an advisory lock, instances running or not."
        ),
    )
    add_common(migrate, json_output=False)
    migrate.set_defaults(handler=cmd_migrate)


def _size(path: Path) -> int:
    """The file and its WAL, in bytes."""
    wal = path.with_name(path.name + "-wal")
    return sum(p.stat().st_size for p in (path, wal) if p.exists())


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


async def cmd_migrate(args: argparse.Namespace) -> int:
    config = load(args.config).store
    conninfo = config.conninfo()
    if conninfo is not None:
        return await _migrate_postgresql(make_store(config.path, conninfo))
    path = config.path
    existed = path.exists()
    store = SqliteStore(path)
    try:
        await store.open()
    except sqlite3.Error as exc:
        print(f"smsbridge migrate: {path}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        version = await store.read(migrations.version)
        if not existed:
            print(f"{path}: created at schema version {version}, incremental vacuum on")
            return EXIT_OK
        if store.migrated:
            print(f"{path}: schema version {store.migrated[0].version - 1} -> {version}")
            for step in store.migrated:
                print(f"  {step.version}: {step.summary}")
        else:
            print(f"{path}: schema version {version}, up to date")
        if await store.read(vacuum.is_incremental):
            print(f"{path}: incremental vacuum already on")
        else:
            before = _size(path)
            try:
                await store.maintain(vacuum.make_incremental)
            except sqlite3.Error as exc:  # VACUUM is atomic: the file is as it was
                print(f"smsbridge migrate: {path}: VACUUM failed: {exc}", file=sys.stderr)
                return EXIT_REFUSED
            print(
                f"{path}: incremental vacuum turned on (one full VACUUM: "
                f"{_mb(before)} -> {_mb(_size(path))})"
            )
    finally:
        await store.close()
    return EXIT_OK


async def _migrate_postgresql(store: Store) -> int:
    """Apply the steps the database lacks (under its advisory lock: instances may be running)."""
    try:
        await store.open()
    except StoreOpenError as exc:
        print(f"smsbridge migrate: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        version = await store.read(pg_migrations.version)
    finally:
        await store.close()
    if store.migrated:
        print(f"{store.where}: schema version {store.migrated[0].version - 1} -> {version}")
        for step in store.migrated:
            print(f"  {step.version}: {step.summary}")
    else:
        print(f"{store.where}: schema version {version}, up to date")
    return EXIT_OK
