"""Versioned schema: a first-release file upgrades in place; steps are atomic; newer is refused."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import bridge.store.migrations as migrations
import bridge.store.vacuum as vacuum
from bridge.events import Event, EventKind
from bridge.intake.conversations import by_code, latest_conversation, record_conversation
from bridge.store import SchemaTooNewError, SqliteStore
from bridge.store.schema import SCHEMA
from bridge.testing import DaemonFactory

SMSBRIDGE = str(Path(sys.executable).parent / "smsbridge")
NUMBER = "15102110086"
T0 = 1_767_000_000.0


def round_one_file(path: Path, *, without_reply_codes: bool = False) -> None:
    """A store as the first release left it: its SCHEMA, WAL, user_version 0, live rows.

    Rows are written with plain SQL against that schema (not today's helpers), as the file
    format they stand for is frozen.
    """
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    schema = SCHEMA
    if without_reply_codes:  # a store from before reply codes: the column came by ALTER TABLE
        schema = schema.replace(",\n    code INTEGER NOT NULL DEFAULT 1\n", "\n")
        assert "code INTEGER" not in schema
    conn.executescript(schema)
    body = json.dumps(Event(kind=EventKind.ALERT, source="am", text="disk full").to_json())
    conn.execute("INSERT INTO events (id, body, received_at) VALUES (1, ?, ?)", (body, T0))
    conn.execute("INSERT INTO events (id, body, received_at) VALUES (2, ?, ?)", (body, T0))
    jobs = """INSERT INTO jobs (id, output, recipient, text, event_id, state, next_at,
                                created_at, updated_at) VALUES (?, 'sms', ?, ?, ?, ?, 0, ?, ?)"""
    conn.execute(jobs, (1, NUMBER, "disk full on db1", 1, "pending", T0, T0))
    conn.execute(jobs, (2, NUMBER, "sent before", 1, "sent", T0, T0))
    conn.execute(
        """INSERT INTO held (output, recipient, rule, name, reason, created_at)
           VALUES ('sms', ?, 'disk', 'DiskFull', 'cap', ?)""",
        (NUMBER, T0),
    )
    conn.execute(
        """INSERT INTO group_members (rule, group_key, output, recipient, event_id, flush_at,
                                      created_at) VALUES ('disk', 'g', 'sms', ?, 2, ?, ?)""",
        (NUMBER, T0 + 30, T0),
    )
    columns = "mobile, job_id, event_id, conversation, created_at, expires_at"
    values = "?, 2, 1, NULL, ?, ?"
    if not without_reply_codes:
        columns, values = columns + ", code", values + ", 2"
    conn.execute(
        f"INSERT INTO conversations ({columns}) VALUES ({values})",  # noqa: S608 - test text
        (NUMBER, T0, T0 + 86400),
    )
    conn.execute("INSERT INTO dedupe (key, expires_at) VALUES ('am|g1|firing', ?)", (T0 + 600,))
    conn.execute(
        "INSERT INTO raw_polls (account, action, body, received_at) VALUES ('a', 'getReply', ?, ?)",
        (b"<xml/>", T0),
    )
    conn.execute("INSERT INTO seen_records (key, seen_at) VALUES ('reply|x', ?)", (T0,))
    conn.execute("INSERT INTO settings (key, value) VALUES ('balance|a', '12.50')")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    conn.close()


TABLES = (
    "events",
    "jobs",
    "held",
    "group_members",
    "conversations",
    "dedupe",
    "raw_polls",
    "seen_records",
    "settings",
)


# Columns later steps add to first-release tables: an upgraded file has their defaults there.
ADDED = {"jobs": {"rank": 0}}


def dump(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every first-release table's rows, in the first release's columns (an added column must
    hold its default)."""
    conn = sqlite3.connect(path)
    try:
        found: dict[str, list[tuple[object, ...]]] = {}
        for table in TABLES:
            names = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
            added = ADDED.get(table, {})
            for name, default in added.items():
                if name in names:
                    values = conn.execute(f"SELECT DISTINCT {name} FROM {table}").fetchall()  # noqa: S608
                    assert set(values) <= {(default,)}, (table, name, values)
            columns = ", ".join(name for name in names if name not in added)
            found[table] = conn.execute(
                f"SELECT {columns} FROM {table} ORDER BY rowid"  # noqa: S608
            ).fetchall()
        return found
    finally:
        conn.close()


def upgraded(rows: dict[str, list[tuple[object, ...]]]) -> dict[str, list[tuple[object, ...]]]:
    """A first-release dump as it reads after the steps: step 6 adds who claimed a job
    (nobody, for the jobs already there)."""
    return {**rows, "jobs": [(*row, "") for row in rows["jobs"]]}


def pragma(path: Path, name: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f"PRAGMA {name}").fetchone()[0])
    finally:
        conn.close()


async def test_a_first_release_store_upgrades_in_place_keeping_everything(tmp_path: Path) -> None:
    """user_version 0 with the first release's tables: every row is kept, the version is the
    latest, the new table is there, and no VACUUM ran (auto_vacuum unchanged)."""
    path = tmp_path / "old.sqlite3"
    round_one_file(path)
    before = dump(path)
    store = SqliteStore(path)
    await store.open()
    assert [step.version for step in store.migrated] == list(range(1, migrations.latest() + 1))
    await store.write(lambda conn: conn.execute("INSERT INTO replay VALUES ('k', 'v', 0)"))
    await store.close()
    assert dump(path) == upgraded(before)
    assert pragma(path, "user_version") == migrations.latest()
    assert pragma(path, "auto_vacuum") == 0  # turning it on is `smsbridge migrate`'s job
    again = SqliteStore(path)
    await again.open()
    assert again.migrated == []
    await again.close()


async def test_a_store_from_before_reply_codes_gets_the_column(tmp_path: Path) -> None:
    """The oldest files lack conversations.code: step 1 adds it (default 1), keeping the row."""
    path = tmp_path / "older.sqlite3"
    round_one_file(path, without_reply_codes=True)
    store = SqliteStore(path)
    await store.open()
    rows = await store.read(
        lambda conn: conn.execute("SELECT mobile, job_id, code FROM conversations").fetchall()
    )
    await store.close()
    assert [tuple(row) for row in rows] == [(NUMBER, 2, 1)]


async def test_the_daemon_sends_what_a_first_release_store_left_pending(
    tmp_path: Path, smsbridge_daemon: DaemonFactory
) -> None:
    """Started on a first-release file, the daemon sends its pending job, and the message the
    file held back goes out in the held summary."""
    path = tmp_path / "old.sqlite3"
    round_one_file(path)
    daemon = await smsbridge_daemon(f"store: {{path: {path}}}\n")
    assert daemon.simulator is not None
    await daemon.simulator.state.wait_for(lambda state: len(state.messages) == 2)
    pending, summary = daemon.simulator.state.messages
    assert (pending.mobile, pending.content) == (NUMBER, "disk full on db1")
    assert summary.mobile == NUMBER
    assert "DiskFull" in summary.content


async def test_a_new_file_vacuums_incrementally_from_the_start(tmp_path: Path) -> None:
    """auto_vacuum can only be chosen before the first table: a new file gets INCREMENTAL."""
    path = tmp_path / "new.sqlite3"
    store = SqliteStore(path)
    await store.open()
    await store.close()
    assert pragma(path, "auto_vacuum") == 2
    assert pragma(path, "user_version") == migrations.latest()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


async def test_savepoints_journal_in_memory_and_vacuum_copies_on_disk(tmp_path: Path) -> None:
    """A batch's statement journal stays in memory (no temporary file per commit); the one-off
    VACUUM still builds its copy on disk, then the connection is as it was."""
    store = SqliteStore(tmp_path / "store.sqlite3")
    await store.open()
    try:
        assert await store.read(lambda conn: conn.execute("PRAGMA temp_store").fetchone()[0]) == 2

        def vacuum_then_temp_store(conn: sqlite3.Connection) -> int:
            vacuum.make_incremental(conn)
            return int(conn.execute("PRAGMA temp_store").fetchone()[0])

        assert await store.maintain(vacuum_then_temp_store) == 2
    finally:
        await store.close()


async def test_replies_find_their_conversation_without_the_dropped_index(tmp_path: Path) -> None:
    """Step 8 drops conversations_live: a number's live conversations are found, the newest
    first, through conversations_mobile, without sorting."""
    path = tmp_path / "store.sqlite3"
    store = SqliteStore(path)
    await store.open()
    try:

        def work(conn: sqlite3.Connection) -> list[int]:
            return [
                record_conversation(conn, NUMBER, job, None, None, T0 + job, 60.0, code=job)
                for job in (1, 2, 3)
            ]

        first, _, newest = await store.write(work)
        latest = await store.read(lambda conn: latest_conversation(conn, NUMBER, T0 + 62.0))
        coded = await store.read(lambda conn: by_code(conn, NUMBER, 1, T0 + 60.5))
        expired = await store.read(lambda conn: by_code(conn, NUMBER, 1, T0 + 61.0))
        plan = await store.read(
            lambda conn: " ".join(
                str(row[3])
                for row in conn.execute(
                    "EXPLAIN QUERY PLAN SELECT * FROM conversations WHERE mobile = ? AND "
                    "expires_at > ? ORDER BY created_at DESC, id DESC LIMIT 1",
                    (NUMBER, T0),
                )
            )
        )
    finally:
        await store.close()
    assert latest is not None
    assert latest.id == newest
    assert coded is not None
    assert coded.id == first
    assert expired is None
    assert "conversations_mobile" in plan
    assert "TEMP B-TREE" not in plan
    conn = sqlite3.connect(path)
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    conn.close()
    assert "conversations_live" not in names


async def test_a_newer_schema_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite3"
    store = SqliteStore(path)
    await store.open()
    await store.close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {migrations.latest() + 1}")
    conn.close()
    store = SqliteStore(path)
    with pytest.raises(SchemaTooNewError, match=str(migrations.latest() + 1)) as caught:
        await store.open()
    assert str(path) in str(caught.value)
    assert not store.is_open
    assert pragma(path, "user_version") == migrations.latest() + 1


def test_run_on_a_newer_schema_exits_78_with_one_readable_line(tmp_path: Path) -> None:
    """systemd does not restart on 78: a restart loop could not fix a file from the future."""
    path = tmp_path / "future.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {migrations.latest() + 5}")
    conn.execute("CREATE TABLE something_newer (x)")
    conn.close()
    config = tmp_path / "config.yaml"
    config.write_text(f"store: {{path: {path}}}\nserver: {{listen: '127.0.0.1:0'}}\n")
    for command in ("run", "migrate"):
        result = subprocess.run(
            [SMSBRIDGE, command, "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 78, result.stderr
        assert "Traceback" not in result.stderr
        assert f"smsbridge {command}: {path}: the store's schema is version" in result.stderr
    assert pragma(path, "user_version") == migrations.latest() + 5


def _create(name: str) -> migrations.Migration:
    return migrations.Migration(
        migrations.latest() + 1, name, migrations.script(f"CREATE TABLE {name} (x);")
    )


def test_a_failing_step_leaves_the_file_at_the_step_before(tmp_path: Path) -> None:
    """A step and its version bump commit together: a failure part way rolls back both."""
    conn = sqlite3.connect(tmp_path / "s.sqlite3", isolation_level=None)
    migrations.upgrade(conn)

    def half_done(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE future_table (x)")
        raise sqlite3.OperationalError("disk I/O error")

    failing = migrations.Migration(migrations.latest() + 1, "future_table", half_done)
    with pytest.raises(sqlite3.OperationalError):
        migrations.upgrade(conn, (*migrations.MIGRATIONS, failing))
    assert migrations.version(conn) == migrations.latest()
    assert not conn.in_transaction
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert "future_table" not in tables
    # Fixed, the same step number applies, once.
    fixed = (*migrations.MIGRATIONS, _create("future_table"))
    assert [step.version for step in migrations.upgrade(conn, fixed)] == [len(fixed)]
    assert migrations.upgrade(conn, fixed) == []
    assert migrations.version(conn) == len(fixed)
    conn.close()


def test_a_gap_in_the_steps_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "s.sqlite3", isolation_level=None)
    skipping = migrations.Migration(migrations.latest() + 2, "x", migrations.script(""))
    with pytest.raises(ValueError, match="a step is missing"):
        migrations.upgrade(conn, (*migrations.MIGRATIONS, skipping))
    assert migrations.version(conn) == migrations.latest()
    conn.close()


def test_the_steps_are_numbered_one_by_one() -> None:
    assert [step.version for step in migrations.MIGRATIONS] == list(
        range(1, len(migrations.MIGRATIONS) + 1)
    )


_LITERAL = st.text(alphabet=st.sampled_from("ab;'\n -"), max_size=12)


@given(st.lists(_LITERAL, min_size=1, max_size=6))
def test_statements_split_only_between_statements(literals: list[str]) -> None:
    """Semicolons, quotes and newlines inside string literals never split a statement."""
    quoted = [text.replace("'", "''") for text in literals]
    wanted = [f"INSERT INTO t VALUES ('{text}');" for text in quoted]  # noqa: S608 - test data
    assert migrations.statements("\n".join(wanted)) == wanted
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE t (x)")
    migrations.script("\n".join(wanted))(conn)
    assert [row[0] for row in conn.execute("SELECT x FROM t ORDER BY rowid")] == literals


def migrate(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SMSBRIDGE, "migrate", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_migrate_upgrades_and_turns_on_incremental_vacuum_once(tmp_path: Path) -> None:
    """`smsbridge migrate` on a first-release file: steps applied, one VACUUM makes it
    incremental (and gives back what was freed), rows kept; a second run has nothing to do."""
    path = tmp_path / "old.sqlite3"
    round_one_file(path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executemany("INSERT INTO events (body, received_at) VALUES (?, 0)", [("x" * 2000,)] * 2000)
    conn.execute("DELETE FROM events WHERE received_at = 0")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    size = path.stat().st_size
    before = dump(path)
    config = tmp_path / "config.yaml"
    config.write_text(f"store:\n  path: {path.name}\n")  # relative to the config file

    first = migrate(config)
    assert first.returncode == 0, first.stderr
    assert f"{path}: schema version 0 -> {migrations.latest()}" in first.stdout
    assert "incremental vacuum turned on (one full VACUUM" in first.stdout
    assert pragma(path, "auto_vacuum") == 2
    assert pragma(path, "user_version") == migrations.latest()
    assert dump(path) == upgraded(before)
    assert path.stat().st_size < size / 4

    second = migrate(config)
    assert second.returncode == 0, second.stderr
    assert f"schema version {migrations.latest()}, up to date" in second.stdout
    assert "incremental vacuum already on" in second.stdout


def test_migrate_creates_a_missing_store(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("store: {path: state/new.sqlite3}\n")
    result = migrate(config)
    assert result.returncode == 0, result.stderr
    assert "created at schema version" in result.stdout
    assert pragma(tmp_path / "state" / "new.sqlite3", "auto_vacuum") == 2


def test_migrate_on_a_file_that_is_not_a_store_says_so(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a database, " * 100)
    config = tmp_path / "config.yaml"
    config.write_text(f"store: {{path: {path}}}\n")
    result = migrate(config)
    assert result.returncode == 78
    assert "Traceback" not in result.stderr
    assert f"smsbridge migrate: {path}: file is not a database" in result.stderr
