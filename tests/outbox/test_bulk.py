"""Bulk runs in the store: a row queued once however often the run is repeated, its progress,
a sender that died mid-call, and retention forgetting a run with its jobs."""

from __future__ import annotations

from decimal import Decimal
from functools import partial
from pathlib import Path

from bridge.outbox import bulk, jobs
from bridge.outbox.retention import RetentionPolicy, prune
from bridge.plugin import OutcomeKind
from bridge.store import Connection, SqliteStore

DAY = 86400.0
NOW = 1_767_000_000.0
RUN = "ab" * 32


def messages(rows: range) -> list[bulk.BulkMessage]:
    return [bulk.BulkMessage(row, f"151000{row:05d}", f"hello {row}", 1) for row in rows]


async def test_rows_are_queued_once_below_pages_and_counted(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    await store.open()
    try:
        queue = partial(bulk.queue, run=RUN, output="sms", now=NOW)
        assert await store.write(partial(queue, messages=messages(range(2, 6)))) == 4
        # The same run again, with more rows: only the new ones are queued.
        assert await store.write(partial(queue, messages=messages(range(2, 8)))) == 2
        assert await store.read(partial(bulk.queued_rows, run=RUN)) == set(range(2, 8))

        def settle(conn: Connection) -> None:
            (first, second, third, *_) = jobs.claim(conn, "sms", NOW, 10, rule=bulk.rule_of(RUN))
            assert first.payload == {"row": 2}
            assert not first.retry_ambiguous  # a bulk row is never resent when in doubt
            jobs.mark_sent(conn, first.id, NOW, "m1", 1, Decimal("0.05"))
            jobs.mark_final(conn, second.id, jobs.JobState.FAILED, NOW, "DTBLACK", "x")
            jobs.mark_held(conn, third.id, NOW, NOW + 60, "balance too low", OutcomeKind.HOLD)

        await store.write(settle)
        progress = await store.read(partial(bulk.progress, run=RUN))
        assert (progress.total, progress.sent, progress.failed, progress.held) == (6, 1, 1, 1)
        assert (progress.sending, progress.waiting) == (3, 0)
        assert progress.failures == ((3, "DTBLACK"),)
        assert progress.holds == ("balance too low",)
        assert str(progress.cost) == "0.05"

        # The sender died with three claimed: once surely dead, they are unknown, not resent.
        stale = partial(bulk.settle_stale, run=RUN, now=NOW + 100)
        assert await store.write(partial(stale, before=NOW)) == 0  # may still be alive
        assert await store.write(partial(stale, before=NOW + 1)) == 3
        progress = await store.read(partial(bulk.progress, run=RUN))
        assert (progress.unknown, progress.moving) == (3, False)
    finally:
        await store.close()


async def test_retention_forgets_a_run_with_its_jobs(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    await store.open()
    try:
        old, recent = NOW - 40 * DAY, NOW - DAY
        queue = partial(bulk.queue, output="sms")
        await store.write(partial(queue, run=RUN, messages=messages(range(2, 4)), now=old))
        await store.write(partial(queue, run="cd" * 32, messages=messages(range(2, 3)), now=recent))

        def settle_all(conn: Connection) -> None:
            conn.execute("UPDATE jobs SET state = 'sent', updated_at = created_at")

        await store.write(settle_all)
        pruned = await prune(store, NOW, RetentionPolicy(keep=30 * DAY, keep_record_keys=DAY))
        assert pruned.rows["jobs"] == 2
        assert pruned.rows["bulk_rows"] == 2
        assert await store.read(partial(bulk.queued_rows, run=RUN)) == set()
        assert await store.read(partial(bulk.queued_rows, run="cd" * 32)) == {2}
    finally:
        await store.close()
