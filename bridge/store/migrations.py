"""Versioned schema changes: an ordered list of steps, each applied once and recorded in the store.

Every step has a body for each backend: `apply` for SQLite and `postgresql` for PostgreSQL
(`portable()` makes a step whose one SQL body runs on both). SQLite is upgraded here; PostgreSQL
by `bridge.store.pg_migrations`, from the same list.

A SQLite file's `PRAGMA user_version` is the number of the last step applied. A store written
before versions existed has user_version 0 and the version-1 tables already: step 1 creates only
what is missing, so such a file upgrades in place with everything in it kept.

To change the schema, append a step with the next number; never edit a step that shipped. A step
runs in its own transaction together with the record of its version, so it is applied whole or
not at all. Write steps with `script()` (plain SQL) or as a function of the connection:
`portable(6, "what it adds", sql)` when the SQL runs on both (indexes, most ALTER TABLE ... ADD
COLUMN), else `Migration(6, "what it adds", script(schema.X), script(schema_pg.X))` with
PostgreSQL's types (DOUBLE PRECISION for REAL, BIGINT identity ids, BYTEA for bytes). A step
without a PostgreSQL body stops a PostgreSQL store from upgrading past it, saying so.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import bridge.store.schema as schema
import bridge.store.schema_pg as schema_pg
from bridge.store.connection import Connection


class SchemaTooNewError(Exception):
    """The file was written by a newer smsbridge: this one must not run on it."""


Step = Callable[[Connection], None]


@dataclass(frozen=True, slots=True)
class Migration:
    """One step: brings a store at `version - 1` to `version`.

    `postgresql` is None until the step is written for PostgreSQL: a PostgreSQL store then
    refuses to upgrade past it rather than run SQLite's SQL. `oldest_code` is the oldest schema
    version whose code may still run once this step is applied: a step that only adds keeps
    the default (every release may), one that takes something away names the first release
    that no longer uses it (an instance older than that then refuses to start).
    """

    version: int
    summary: str  # what the step adds, for `smsbridge migrate`
    apply: Step  # SQLite
    postgresql: Step | None = None
    oldest_code: int = 0


def portable(version: int, summary: str, sql: str, *, oldest_code: int = 0) -> Migration:
    """A step whose SQL runs unchanged on SQLite and PostgreSQL."""
    body = script(sql)
    return Migration(version, summary, body, body, oldest_code)


def statements(sql: str) -> list[str]:
    """Split a script into complete statements (executescript would commit the transaction)."""
    found: list[str] = []
    current = ""
    for line in sql.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            found.append(current.strip())
            current = ""
    if current.strip():
        raise ValueError(f"incomplete SQL statement: {current.strip()[:60]}")
    return found


def script(sql: str) -> Callable[[Connection], None]:
    """A step that runs the statements of `sql` in order."""
    parts = statements(sql)

    def run(conn: Connection) -> None:
        for statement in parts:
            conn.execute(statement)

    return run


def _round_one(conn: Connection) -> None:
    script(schema.SCHEMA)(conn)
    # Stores written before reply codes existed lack this column; CREATE IF NOT EXISTS kept them.
    columns = {row[1] for row in conn.execute("PRAGMA table_info(conversations)")}
    if "code" not in columns:
        conn.execute("ALTER TABLE conversations ADD COLUMN code INTEGER NOT NULL DEFAULT 1")


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "the tables of the first release", _round_one, script(schema_pg.FIRST_RELEASE)),
    Migration(
        2,
        "replay memory; indexes retention prunes by",
        script(schema.REPLAY_AND_RETENTION),
        script(schema_pg.REPLAY_AND_RETENTION),
    ),
    Migration(
        3,
        "the inbox: deliveries stored before the answer",
        script(schema.INBOX),
        script(schema_pg.INBOX),
    ),
    Migration(
        4,
        "durable timers; incidents and their pages",
        script(schema.TIMERS_AND_INCIDENTS),
        script(schema_pg.TIMERS_AND_INCIDENTS),
    ),
    # Indexes: the same SQL on both.
    portable(5, "indexes the history commands page by", schema.HISTORY_INDEXES),
    Migration(
        6,
        "the web console's audit log",
        script(schema.CONSOLE_AUDIT),
        script(schema_pg.CONSOLE_AUDIT),
    ),
    Migration(
        7,
        "bulk sends: rows of a file and their jobs; claim ranks",
        script(schema.BULK),
        script(schema_pg.BULK),
    ),
    portable(8, "drop a redundant conversations index", schema.DROP_REDUNDANT_INDEXES),
    Migration(
        9,
        "instances and leases; who claimed a job; each account's rate schedule",
        script(schema.INSTANCES_AND_LEASES),
        script(schema_pg.INSTANCES_AND_LEASES),
    ),
)


def latest(steps: Sequence[Migration] = MIGRATIONS) -> int:
    return steps[-1].version if steps else 0


def version(conn: Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def check_version(conn: Connection, steps: Sequence[Migration] = MIGRATIONS) -> int:
    """The file's version; raises SchemaTooNewError when it is past the last step known here."""
    found = version(conn)
    if found > latest(steps):
        raise SchemaTooNewError(
            f"the store's schema is version {found}, but this smsbridge knows versions up to "
            f"{latest(steps)}: it was written by a newer release; run that release (or newer) "
            "on it, or start from a backup made by this one"
        )
    return found


def upgrade(conn: Connection, steps: Sequence[Migration] = MIGRATIONS) -> list[Migration]:
    """Apply the steps the file lacks, each in its own transaction; returns those applied.

    `conn` must be in autocommit mode (isolation_level=None). Safe against another process
    upgrading the same file at once: each step re-reads the version under the write lock.
    """
    applied: list[Migration] = []
    check_version(conn, steps)
    for step in steps:
        if step.version <= version(conn):
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = check_version(conn, steps)
            if step.version <= current:  # another process applied it meanwhile
                conn.execute("ROLLBACK")
                continue
            if current != step.version - 1:
                raise ValueError(f"migration {step.version} follows {current}: a step is missing")
            step.apply(conn)
            # PRAGMA takes no parameters; the value is an int from our own list.
            conn.execute(f"PRAGMA user_version = {int(step.version)}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        applied.append(step)
    return applied
