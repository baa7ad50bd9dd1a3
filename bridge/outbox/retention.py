"""Retention: prune what is settled and old in small transactions, then hand freed pages back.

What goes, and when:
- settled jobs (sent, failed, unknown) settled longer than `keep` ago, unless a live
  conversation still points at them (a reply must find its SMS);
- events older than `keep` that no job, conversation or group member refers to;
- raw poll answers processed longer than `keep_raw_polls` ago (a day): once processed, what
  they carried is in jobs and events, and an idle daemon's polls alone would otherwise keep
  ~1.8 MB a day; an unprocessed answer is replayed at start and stays;
- expired conversations, de-duplication keys and replay claims (each by its own window),
  polled records' keys older than `keep_record_keys`, and console audit entries older than `keep`.
Held rows and group members are deleted when they are summarised or flushed; what is left of
them is live, and so are pending and sending jobs: none of it is touched here.

Each table is walked in rowid order, `batch` rows per transaction, so a write from ingest waits
for one batch at most. The walk of an append-ordered table stops at a batch that is all too new.
PostgreSQL has no rowid: tables are walked by their id there, and a table keyed by text has
its doomed rows deleted `batch` at a time; its own autovacuum hands the space back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from bridge.outbox.jobs import JobState
from bridge.store import Connection, Dialect, Store, dialect, vacuum

# The settled states, as the named parameters :sent, :failed and :unknown of the jobs sweep.
_SETTLED = {
    state.value: state.value for state in (JobState.SENT, JobState.FAILED, JobState.UNKNOWN)
}


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How long things are kept, and how much one transaction does."""

    keep: float  # seconds: `store.retention`
    keep_record_keys: float  # seconds polled records' keys are kept (a gateway may repeat one)
    keep_raw_polls: float = 86400.0  # seconds processed raw answers are kept, for debugging
    # Rows looked at per transaction: 500 events of 1.7 KB take ~2 ms (bench/retention.py).
    batch: int = 500
    vacuum_pages: int = 128  # pages handed back per step (512 KiB at SQLite's 4 KiB pages)


@dataclass(frozen=True, slots=True)
class _Sweep:
    table: str
    doomed: str  # SQL over a row of `table`: it may go
    # SQL over a row: it is too new to go. Given for tables whose rows are appended in time
    # order, it lets a walk stop early; without it, the whole table is walked.
    newer: str = ""
    numbered: bool = True  # rows have an integer id (else only SQLite's rowid numbers them)


_SWEEPS = (
    # Conversations first: an expired one no longer keeps its job or event.
    _Sweep("conversations", "expires_at <= :now"),
    _Sweep(
        "jobs",
        """state IN (:sent, :failed, :unknown) AND updated_at < :cutoff AND NOT EXISTS
            (SELECT 1 FROM conversations c WHERE c.job_id = jobs.id AND c.expires_at > :now)""",
        "created_at >= :cutoff",
    ),
    # A bulk run's row outlives its job only as long: a run older than retention is forgotten.
    _Sweep(
        "bulk_rows",
        "created_at < :cutoff AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = bulk_rows.job_id)",
        "created_at >= :cutoff",
    ),
    _Sweep(
        "events",
        """received_at < :cutoff
           AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.event_id = events.id)
           AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.event_id = events.id)
           AND NOT EXISTS (SELECT 1 FROM group_members g WHERE g.event_id = events.id)""",
        "received_at >= :cutoff",
    ),
    _Sweep(
        # A processed delivery's effects are in jobs and events: its body goes with the raw polls.
        "inbox",
        "processed_at IS NOT NULL AND processed_at < :raw_cutoff",
        "received_at >= :raw_cutoff",
    ),
    _Sweep(
        "raw_polls",
        "processed_at IS NOT NULL AND processed_at < :raw_cutoff",
        "received_at >= :raw_cutoff",
    ),
    _Sweep("dedupe", "expires_at <= :now", numbered=False),
    _Sweep(
        "seen_records", "seen_at < :records_cutoff", "seen_at >= :records_cutoff", numbered=False
    ),
    _Sweep("replay", "expires_at <= :now", numbered=False),
    # What people did in the console is kept as long as the messages it was about.
    _Sweep("console_audit", "at < :cutoff", "at >= :cutoff"),
)


@dataclass(slots=True)
class Pruned:
    """What one retention run did."""

    rows: dict[str, int] = field(default_factory=dict)  # table -> rows deleted
    transactions: int = 0
    pages_freed: int = 0
    incremental: bool = True  # False: the file predates incremental vacuum (`smsbridge migrate`)


def _sweep_batch(
    conn: Connection, sweep: _Sweep, after: int, batch: int, params: dict[str, float | str]
) -> tuple[int | None, int]:
    """Delete the doomed rows among the `batch` rows after rowid `after`.

    Returns the last rowid looked at (None when the walk is over) and the rows deleted.
    """
    newer = sweep.newer or "0"
    rowid = "rowid" if dialect(conn) is Dialect.SQLITE else "id"
    if not sweep.numbered and rowid != "rowid":
        return _sweep_unnumbered(conn, sweep, batch, params)
    # Table and conditions come from _SWEEPS above, never from input.
    rows = conn.execute(
        f"""SELECT {rowid} AS id, ({newer}) AS newer FROM {sweep.table}
            WHERE {rowid} > :after ORDER BY {rowid} LIMIT :batch""",  # noqa: S608
        {**params, "after": after, "batch": batch},
    ).fetchall()
    if not rows:
        return None, 0
    last = int(rows[-1]["id"])
    deleted = conn.execute(
        f"""DELETE FROM {sweep.table}
            WHERE {rowid} > :after AND {rowid} <= :last AND ({sweep.doomed})""",  # noqa: S608
        {**params, "after": after, "last": last},
    ).rowcount
    over = len(rows) < batch or all(row["newer"] for row in rows)
    return (None if over else last), deleted


def _sweep_unnumbered(
    conn: Connection, sweep: _Sweep, batch: int, params: dict[str, float | str]
) -> tuple[int | None, int]:
    """PostgreSQL, a table keyed by text: delete up to `batch` doomed rows (by their ctid)."""
    deleted = conn.execute(
        f"""DELETE FROM {sweep.table} WHERE ctid = ANY(ARRAY(
                SELECT ctid FROM {sweep.table} WHERE {sweep.doomed} LIMIT :batch))""",  # noqa: S608
        {**params, "batch": batch},
    ).rowcount
    return (None if deleted < batch else 0), deleted


async def prune(store: Store, now: float, policy: RetentionPolicy, *, log: Any = None) -> Pruned:
    """Run retention once over the store as of `now` (seconds since the epoch)."""
    started = time.monotonic()
    pruned = Pruned()
    params: dict[str, float | str] = {
        **_SETTLED,
        "now": now,
        "cutoff": now - policy.keep,
        "records_cutoff": now - policy.keep_record_keys,
        "raw_cutoff": now - policy.keep_raw_polls,
    }
    for sweep in _SWEEPS:
        after: int | None = 0
        total = 0
        while after is not None:
            after, deleted = await store.write(
                partial(_sweep_batch, sweep=sweep, after=after, batch=policy.batch, params=params)
            )
            pruned.transactions += 1
            total += deleted
        pruned.rows[sweep.table] = total
    if store.dialect is Dialect.SQLITE:
        pruned.incremental = await store.read(vacuum.is_incremental)
    if store.dialect is Dialect.SQLITE and pruned.incremental:
        step = partial(vacuum.incremental_step, pages=policy.vacuum_pages)
        while freed := await store.maintain(step):
            pruned.pages_freed += freed
        await store.maintain(vacuum.checkpoint)
    if log is not None and (any(pruned.rows.values()) or pruned.pages_freed):
        log.info(
            "store_pruned",
            rows={table: n for table, n in pruned.rows.items() if n},
            transactions=pruned.transactions,
            pages_freed=pruned.pages_freed,
            incremental_vacuum=pruned.incremental,
            seconds=round(time.monotonic() - started, 3),
        )
    return pruned
