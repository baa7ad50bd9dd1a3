"""A person's actions on one job: retry, cancel and release act only where they make sense, and
each leaves the job where the dispatcher takes it (or never will)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.events import Event, EventKind, Intent
from bridge.outbox import JobAction, JobActionError, cancel_job, jobs, release_job, retry_job
from bridge.plugin import OutcomeKind
from bridge.store import Row, migrations

NOW = 1_000_000.0
# Every place a job can stand: (state, code, delivery)
PLACES = [
    ("pending", "", ""),
    ("pending", "retry", ""),
    ("pending", "hold", ""),
    ("pending", "pause_account", ""),
    ("sending", "", ""),
    ("sent", "", "delivered"),
    ("sent", "", "failed"),
    ("failed", "rejected", ""),
    ("unknown", "timeout", ""),
]


@pytest.fixture(scope="module")
def conn(tmp_path_factory: pytest.TempPathFactory) -> sqlite3.Connection:
    path: Path = tmp_path_factory.mktemp("actions") / "store.sqlite3"
    connection = sqlite3.connect(path, isolation_level=None)
    connection.row_factory = sqlite3.Row
    migrations.upgrade(connection)
    return connection


def _job(conn: sqlite3.Connection, state: str, code: str, delivery: str) -> int:
    event = Event(EventKind.ALERT, "test", labels={"alertname": "X"})
    job = jobs.add_job(conn, Intent("sms", "15102110086", "text", "r", event), None, NOW - 60)
    conn.execute(
        """UPDATE jobs SET state = ?, code = ?, delivery = ?, attempts = 3, next_at = ?
           WHERE id = ?""",
        (state, code, delivery, NOW + 3600, job),
    )
    return job


def _applies(action: Callable[..., JobAction], *args: Any) -> bool:
    try:
        action(*args)
    except JobActionError:
        return False
    return True


def _row(conn: sqlite3.Connection, job: int) -> Row:
    found: Row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job,)).fetchone()
    return found


@given(place=st.sampled_from(PLACES), action=st.sampled_from(["retry", "cancel", "release"]))
def test_each_action_acts_only_where_it_makes_sense(
    conn: sqlite3.Connection, place: tuple[str, str, str], action: str
) -> None:
    state, code, delivery = place
    job = _job(conn, state, code, delivery)
    before = dict(_row(conn, job))
    if action == "retry":
        done = _applies(retry_job, conn, job, NOW, "retried by alice")
        expected = state in ("failed", "unknown") or (state == "pending" and code not in jobs.HOLDS)
    elif action == "cancel":
        done = _applies(cancel_job, conn, job, NOW, "cancelled by alice")
        expected = state == "pending"
    else:
        done = _applies(release_job, conn, job, NOW)
        expected = state == "pending" and code in jobs.HOLDS
    assert done is expected
    after = dict(_row(conn, job))
    if not done:
        assert after == before
    elif action == "retry":
        assert (after["state"], after["next_at"], after["attempts"]) == ("pending", NOW, 0)
        assert (after["code"], after["reason"]) == ("", "retried by alice")
    elif action == "cancel":
        assert (after["state"], after["reason"]) == ("failed", "cancelled by alice")
    else:
        assert (after["state"], after["next_at"], after["code"]) == ("pending", NOW, code)


def test_a_retried_job_is_claimed_and_a_cancelled_one_never(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM jobs")
    failed = _job(conn, "failed", "rejected", "")
    cancelled = _job(conn, "pending", "", "")
    assert retry_job(conn, failed, NOW, "retried by bob").output == "sms"
    assert cancel_job(conn, cancelled, NOW, "cancelled by bob").output == "sms"
    claimed = jobs.claim(conn, "sms", NOW, 10)
    assert [record.id for record in claimed] == [failed]


def test_releasing_a_missing_job_does_nothing(conn: sqlite3.Connection) -> None:
    assert not _applies(release_job, conn, 10**9, NOW)
    assert not _applies(cancel_job, conn, 10**9, NOW, "x")
    assert not _applies(retry_job, conn, 10**9, NOW, "x")
    assert (OutcomeKind.HOLD.value, OutcomeKind.PAUSE_ACCOUNT.value) == jobs.HOLDS
