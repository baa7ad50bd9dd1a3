"""Retention: old settled rows go in small transactions, live state stays, the file shrinks."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

import bridge.store.vacuum as vacuum
from bridge.config import ConfigError, load_config
from bridge.config.models import Config
from bridge.outbox.retention import RetentionPolicy, prune
from bridge.store import Connection, SqliteStore, Store, StoreReplay
from bridge.store.schema import SCHEMA
from bridge.testing import DaemonFactory

DAY = 86400.0
NOW = 1_767_000_000.0
OLD = NOW - 40 * DAY  # past the 30-day retention
RECENT = NOW - DAY
POLICY = RetentionPolicy(keep=30 * DAY, keep_record_keys=7 * DAY, batch=500)
BODY = b"x" * 1500  # a realistic stored alert


def insert(conn: Connection, sql: str, params: tuple[object, ...]) -> int:
    """Insert one row; its id."""
    return int(conn.execute(sql + " RETURNING id", params).fetchone()[0])


def event(conn: Connection, at: float, body: bytes = BODY) -> int:
    return insert(conn, "INSERT INTO events (body, received_at) VALUES (?, ?)", (body, at))


def job(conn: Connection, state: str, at: float, event_id: int | None, settled: float = 0.0) -> int:
    return insert(
        conn,
        """INSERT INTO jobs (output, recipient, text, event_id, state, next_at, created_at,
                             updated_at) VALUES ('sms', '15102110086', ?, ?, ?, ?, ?, ?)""",
        ("t" * 300, event_id, state, at, at, at + settled),
    )


def conversation(conn: Connection, job_id: int, event_id: int, expires: float) -> int:
    return insert(
        conn,
        """INSERT INTO conversations (mobile, job_id, event_id, created_at, expires_at)
           VALUES ('15102110086', ?, ?, ?, ?)""",
        (job_id, event_id, expires - DAY, expires),
    )


KEYED = ("dedupe", "seen_records", "replay", "settings")  # tables keyed by text, not an id


def ids(conn: Connection, table: str) -> set[object]:
    column = "key" if table in KEYED else "id"
    return {row[0] for row in conn.execute(f"SELECT {column} FROM {table}")}  # noqa: S608


@dataclass
class Live:
    """Rows retention must keep, by table."""

    rows: dict[str, set[object]]


def fill(conn: Connection) -> Live:
    """Old settled rows by the thousand, and one of each kind of live state (mostly old too)."""
    for n in range(3000):
        state = ("sent", "failed", "unknown")[n % 3]
        settled = job(conn, state, OLD, event(conn, OLD), settled=60)
        if n % 100 == 0:  # expired conversations go, and no longer keep their job
            conversation(conn, settled, 0, OLD + DAY)
    conn.executemany(
        """INSERT INTO raw_polls (account, action, body, received_at, processed_at)
           VALUES ('a', 'getReply', ?, ?, ?)""",
        [(b"r" * 400, OLD, OLD + 1)] * 2000,
    )
    conn.execute(  # processed two days ago: its records are in jobs and events by now
        """INSERT INTO raw_polls (account, action, body, received_at, processed_at)
           VALUES ('a', 'getReply', ?, ?, ?)""",
        (b"r", NOW - 2 * DAY, NOW - 2 * DAY),
    )
    conn.executemany(  # deliveries processed long ago: their effects are in jobs and events
        """INSERT INTO inbox (source, body, received_at, processed_at) VALUES ('am', ?, ?, ?)""",
        [(b"{}" * 200, OLD, OLD + 1)] * 400,
    )
    conn.executemany(
        "INSERT INTO dedupe (key, expires_at) VALUES (?, ?)",
        [(f"old{n}", NOW - 1) for n in range(500)],
    )
    conn.executemany(
        "INSERT INTO seen_records (key, seen_at) VALUES (?, ?)",
        [(f"old{n}", NOW - 8 * DAY) for n in range(500)],
    )
    conn.executemany(
        "INSERT INTO replay (key, value, expires_at) VALUES (?, 'm', ?)",
        [(f"old{n}", NOW - 1) for n in range(500)],
    )
    conn.executemany(
        "INSERT INTO console_audit (at, person, role, action) VALUES (?, 'alice', 'operator', 'x')",
        [(OLD,)] * 300,
    )

    live: dict[str, set[object]] = {t: set() for t in ("events", "jobs", "conversations")}
    for state in ("pending", "sending"):  # unsettled, however old
        e = event(conn, OLD)
        live["events"].add(e)
        live["jobs"].add(job(conn, state, OLD, e))
    e = event(conn, OLD)  # settled long ago, but a live conversation still points at it
    answered = job(conn, "sent", OLD, e)
    live["events"].add(e)
    live["jobs"].add(answered)
    live["conversations"].add(conversation(conn, answered, e, NOW + DAY))
    e = event(conn, RECENT)  # settled within the retention
    live["events"].add(e)
    live["jobs"].add(job(conn, "failed", RECENT, e))
    live["events"].add(event(conn, RECENT))  # recent, referred to by nothing
    due = event(conn, OLD)  # a group member already due, waiting for its flush
    live["events"].add(due)
    live["group_members"] = {
        insert(
            conn,
            """INSERT INTO group_members (rule, group_key, output, recipient, event_id,
                                          flush_at, created_at)
               VALUES ('r', 'g', 'sms', '15102110086', ?, ?, ?)""",
            (due, OLD + 30, OLD),
        )
    }
    live["held"] = {
        insert(
            conn,
            """INSERT INTO held (output, recipient, rule, name, reason, created_at)
               VALUES ('sms', '15102110086', 'r', 'DiskFull', 'cap', ?)""",
            (OLD,),
        )
    }
    live["raw_polls"] = {
        insert(  # stored, never processed: replayed at the next start
            conn,
            "INSERT INTO raw_polls (account, action, body, received_at) VALUES ('a', 'x', ?, ?)",
            (b"unprocessed", OLD),
        ),
        insert(
            conn,
            """INSERT INTO raw_polls (account, action, body, received_at, processed_at)
               VALUES ('a', 'x', ?, ?, ?)""",
            (b"recent", NOW - 3600, NOW - 3600),
        ),
    }
    live["inbox"] = {
        insert(  # accepted, not yet processed (the daemon stopped): replayed at start
            conn, "INSERT INTO inbox (source, body, received_at) VALUES ('am', ?, ?)", (b"{}", OLD)
        ),
        insert(
            conn,
            """INSERT INTO inbox (source, body, received_at, processed_at)
               VALUES ('am', ?, ?, ?)""",
            (b"{}", NOW - 3600, NOW - 3600),
        ),
    }
    for table, sql, value in (
        ("dedupe", "INSERT INTO dedupe VALUES ('live', ?)", NOW + 60),
        ("seen_records", "INSERT INTO seen_records VALUES ('live', ?)", NOW - 6 * DAY),
        ("replay", "INSERT INTO replay VALUES ('live', 'm', ?)", NOW + 60),
    ):
        conn.execute(sql, (value,))
        live[table] = {"live"}
    audit = conn.execute(
        "INSERT INTO console_audit (at, person, role, action) "
        "VALUES (?, 'alice', 'operator', 'login') RETURNING id",
        (NOW - 60,),
    ).fetchone()
    live["console_audit"] = {audit[0]}
    conn.execute("INSERT INTO settings (key, value) VALUES ('balance|a', '1.00')")
    live["settings"] = ids(conn, "settings")
    return Live(live)


def size(path: Path) -> int:
    return path.stat().st_size


async def test_old_settled_rows_go_live_rows_stay_and_the_file_shrinks(store: Store) -> None:
    """On each backend; SQLite's file then shrinks (PostgreSQL's autovacuum frees space)."""
    live = await store.write(fill)
    on_sqlite = isinstance(store, SqliteStore)
    if on_sqlite:
        await store.maintain(vacuum.checkpoint)
        before = size(store.path)

    pruned = await prune(store, NOW, POLICY)

    assert pruned.rows == {
        "conversations": 30,
        "jobs": 3000,
        "bulk_rows": 0,
        "events": 3000,
        "inbox": 400,
        "raw_polls": 2001,
        "dedupe": 500,
        "seen_records": 500,
        "replay": 500,
        "console_audit": 300,
    }
    for table, kept in live.rows.items():
        assert await store.read(lambda conn, t=table: ids(conn, t)) == kept, table
    # In small transactions: 3000 jobs at 500 a batch took six at least.
    assert pruned.transactions >= 3 * 6
    if on_sqlite:
        assert pruned.incremental
        assert pruned.pages_freed > 1000
        assert await store.read(vacuum.free_pages) == 0
        assert size(store.path) < before / 4, (before, size(store.path))


async def test_ingest_is_not_held_behind_a_long_prune(tmp_path: Path) -> None:
    """A write made while retention works is committed between two of its batches."""
    store = SqliteStore(tmp_path / "store.sqlite3")
    await store.open()

    def many(conn: Connection) -> None:
        e = event(conn, OLD, "x")
        conn.executemany(
            """INSERT INTO jobs (output, recipient, text, event_id, state, next_at, created_at,
                                 updated_at) VALUES ('sms', 'n', 't', ?, 'sent', 0, ?, ?)""",
            [(e, OLD, OLD)] * 20000,
        )

    await store.write(many)
    started = store.commits
    task = asyncio.create_task(
        prune(store, NOW, RetentionPolicy(keep=30 * DAY, keep_record_keys=0, batch=200))
    )
    deadline = time.monotonic() + 10
    while store.commits < started + 2:  # retention is under way
        assert time.monotonic() < deadline
        await asyncio.sleep(0.001)
    pending = await store.write(lambda conn: job(conn, "pending", NOW, None))
    assert not task.done()  # the page was committed while retention still had batches to go
    pruned = await task
    assert pruned.rows["jobs"] == 20000
    assert await store.read(lambda conn: ids(conn, "jobs")) == {pending}
    await store.close()


async def test_a_file_from_before_incremental_vacuum_is_pruned_without_vacuum(
    tmp_path: Path,
) -> None:
    """Rows go all the same; the pages stay free for reuse until `smsbridge migrate`."""
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(SCHEMA)
    conn.close()
    store = SqliteStore(path)
    await store.open()
    await store.write(lambda conn: [job(conn, "sent", OLD, event(conn, OLD)) for _ in range(500)])
    with capture_logs() as logs:
        pruned = await prune(store, NOW, POLICY, log=structlog.get_logger())
    assert (pruned.rows["jobs"], pruned.rows["events"]) == (500, 500)
    assert not pruned.incremental
    assert pruned.pages_freed == 0
    assert await store.read(vacuum.free_pages) > 0
    (line,) = [log for log in logs if log["event"] == "store_pruned"]
    assert line["incremental_vacuum"] is False
    await store.close()


async def test_expired_replay_claims_are_forgotten(tmp_path: Path) -> None:
    """A claim outlives nothing but its window: after retention the key can be claimed anew."""
    store = SqliteStore(tmp_path / "store.sqlite3")
    await store.open()
    clock = [NOW]
    replay = StoreReplay(store, lambda: clock[0])
    assert await replay.claim("sig", "msg-1", 60)
    assert not await replay.claim("sig", "msg-2", 60)
    await prune(store, NOW + 30, POLICY)
    assert not await replay.claim("sig", "msg-2", 60)
    await prune(store, NOW + 61, POLICY)
    assert await store.read(lambda conn: ids(conn, "replay")) == set()
    clock[0] = NOW + 61
    assert await replay.claim("sig", "msg-2", 60)
    await store.close()


# --- the rules, for any mix of rows ------------------------------------------------------------

_STATES = ("pending", "sending", "sent", "failed", "unknown")


@st.composite
def histories(draw: st.DrawFn) -> list[tuple[str, int, float, int, float | None, bool]]:
    """Jobs in creation order: (state, age in days, settle delay, whether an event, conversation
    expiry relative to now or None, whether a group member refers to its event)."""
    count = draw(st.integers(0, 25))
    ages = sorted((draw(st.integers(0, 60)) for _ in range(count)), reverse=True)
    return [
        (
            draw(st.sampled_from(_STATES)),
            age,
            draw(st.sampled_from([0.0, 3600.0, 5 * DAY])),
            draw(st.booleans()),
            draw(st.one_of(st.none(), st.sampled_from([-DAY, -1.0, 1.0, 40 * DAY]))),
            draw(st.booleans()),
        )
        for age in ages
    ]


@settings(max_examples=40, deadline=None)
@given(histories(), st.integers(1, 4))
def test_retention_keeps_exactly_what_is_live_or_recent(
    history: list[tuple[str, int, float, int, float | None, bool]], batch: int
) -> None:
    """Whatever the mix and the batch size: a job goes iff settled before the cutoff and no
    live conversation points at it; an event goes iff older than the cutoff and nothing left
    refers to it; a conversation goes iff expired."""
    cutoff = NOW - POLICY.keep

    def build(conn: Connection) -> dict[str, set[int]]:
        expected: dict[str, set[int]] = {"jobs": set(), "events": set(), "conversations": set()}
        for state, age, delay, with_event, expiry, grouped in history:
            at = NOW - age * DAY
            e = event(conn, at, "e") if with_event else None
            j = job(conn, state, at, e, settled=delay)
            live_conversation = expiry is not None and expiry > 0
            if expiry is not None:
                c = conversation(conn, j, e or 0, NOW + expiry)
                if live_conversation:
                    expected["conversations"].add(c)
            if grouped and e is not None:
                conn.execute(
                    """INSERT INTO group_members (rule, group_key, output, recipient, event_id,
                       flush_at, created_at) VALUES ('r', 'g', 'o', 'n', ?, 0, 0)""",
                    (e,),
                )
            settled_long_ago = state in ("sent", "failed", "unknown") and at + delay < cutoff
            if not settled_long_ago or live_conversation:
                expected["jobs"].add(j)
            kept_by = j in expected["jobs"] or live_conversation or grouped
            if e is not None and (at >= cutoff or kept_by):
                expected["events"].add(e)
        return expected

    async def run() -> dict[str, tuple[set[int], set[int]]]:
        with tempfile.TemporaryDirectory() as directory:
            store = SqliteStore(Path(directory) / "s.sqlite3")
            await store.open()
            try:
                expected = await store.write(build)
                policy = RetentionPolicy(keep=POLICY.keep, keep_record_keys=0, batch=batch)
                await prune(store, NOW, policy)
                return {
                    table: (await store.read(lambda conn, t=table: ids(conn, t)), wanted)
                    for table, wanted in expected.items()
                }
            finally:
                await store.close()

    for table, (found, wanted) in asyncio.run(run()).items():
        assert found == wanted, table


# --- wiring --------------------------------------------------------------------------------------


def test_retention_defaults_to_30_days_and_refuses_less_than_a_day(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("store: {path: s.sqlite3}\n")
    assert load_config(config, Config).store.retention.days == 30
    config.write_text("store:\n  path: s.sqlite3\n  retention: 12h\n")
    with pytest.raises(ConfigError) as caught:
        load_config(config, Config)
    assert "config.yaml:3" in caught.value.render()
    assert "at least 1d" in caught.value.render()


async def test_the_daemon_prunes_by_its_configured_retention(
    tmp_path: Path, smsbridge_daemon: DaemonFactory
) -> None:
    """The hourly job prunes with `store.retention` from the config."""
    daemon = await smsbridge_daemon("store: {retention: 2d}\n")
    now = time.time()

    def rows(conn: Connection) -> tuple[int, int]:
        job(conn, "sent", now - 3 * DAY, event(conn, now - 3 * DAY))
        recent = event(conn, now - DAY)
        return job(conn, "sent", now - DAY, recent), recent

    kept_job, kept_event = await daemon.store.write(rows)
    with capture_logs() as logs:
        await daemon._expire()
    assert await daemon.store.read(lambda conn: ids(conn, "jobs")) == {kept_job}
    assert await daemon.store.read(lambda conn: ids(conn, "events")) == {kept_event}
    (line,) = [log for log in logs if log["event"] == "store_pruned"]
    assert line["rows"] == {"jobs": 1, "events": 1}
