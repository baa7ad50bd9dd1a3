"""The durable outbox: the schema, and every read and write of jobs and their bookkeeping.

Functions here take a sqlite3 connection and run inside a Store.write()/read() call, so a
caller composes several of them into one atomic, group-committed transaction.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from bridge.events import Conversation, Event, Intent
from bridge.plugin import Job

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    body TEXT NOT NULL,
    received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    output TEXT NOT NULL,
    recipient TEXT NOT NULL,
    text TEXT NOT NULL,
    payload TEXT NOT NULL DEFAULT '{}',
    rule TEXT NOT NULL DEFAULT '',
    event_id INTEGER REFERENCES events(id),
    conversation TEXT,
    retry_ambiguous INTEGER NOT NULL DEFAULT 1,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    ref TEXT NOT NULL DEFAULT '',
    segments INTEGER NOT NULL DEFAULT 0,
    cost TEXT NOT NULL DEFAULT '0',
    reason TEXT NOT NULL DEFAULT '',
    code TEXT NOT NULL DEFAULT '',
    delivery TEXT NOT NULL DEFAULT '',
    carrier_code TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs(output, next_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS jobs_inflight ON jobs(state) WHERE state = 'sending';
CREATE INDEX IF NOT EXISTS jobs_recipient ON jobs(output, recipient, created_at);
CREATE INDEX IF NOT EXISTS jobs_ref ON jobs(ref, recipient) WHERE ref != '';
CREATE TABLE IF NOT EXISTS dedupe (
    key TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS conversations (
    id INTEGER PRIMARY KEY,
    mobile TEXT NOT NULL,
    job_id INTEGER NOT NULL,
    event_id INTEGER,
    conversation TEXT,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_mobile ON conversations(mobile, created_at);
CREATE TABLE IF NOT EXISTS group_members (
    id INTEGER PRIMARY KEY,
    rule TEXT NOT NULL,
    group_key TEXT NOT NULL,
    output TEXT NOT NULL,
    recipient TEXT NOT NULL,
    event_id INTEGER NOT NULL REFERENCES events(id),
    flush_at REAL NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS group_due ON group_members(flush_at);
CREATE TABLE IF NOT EXISTS held (
    id INTEGER PRIMARY KEY,
    output TEXT NOT NULL,
    recipient TEXT NOT NULL,
    rule TEXT NOT NULL,
    name TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS held_recipient ON held(output, recipient, created_at);
CREATE TABLE IF NOT EXISTS raw_polls (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    action TEXT NOT NULL,
    body BLOB NOT NULL,
    received_at REAL NOT NULL,
    processed_at REAL
);
CREATE INDEX IF NOT EXISTS raw_unprocessed ON raw_polls(id) WHERE processed_at IS NULL;
CREATE TABLE IF NOT EXISTS seen_records (
    key TEXT PRIMARY KEY,
    seen_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


class JobState(StrEnum):
    """Where a job stands; pending jobs with a future next_at are waiting to retry."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A job as stored, with what the dispatcher needs to decide its next step."""

    id: int
    output: str
    recipient: str
    text: str
    payload: dict[str, Any]
    rule: str
    event_id: int | None
    conversation: Conversation | None
    retry_ambiguous: bool
    state: JobState
    attempts: int
    created_at: float

    def job(self) -> Job:
        """The job as an output sees it."""
        return Job(self.id, self.recipient, self.text, self.payload, self.attempts)


def _record(row: sqlite3.Row) -> JobRecord:
    conversation = row["conversation"]
    return JobRecord(
        id=row["id"],
        output=row["output"],
        recipient=row["recipient"],
        text=row["text"],
        payload=json.loads(row["payload"]),
        rule=row["rule"],
        event_id=row["event_id"],
        conversation=Conversation.from_json(json.loads(conversation)) if conversation else None,
        retry_ambiguous=bool(row["retry_ambiguous"]),
        state=JobState(row["state"]),
        attempts=row["attempts"],
        created_at=row["created_at"],
    )


# --- events ----------------------------------------------------------------------------------


def add_event(conn: sqlite3.Connection, event: Event) -> int:
    """Store an event's context (replies and reports carry it back later)."""
    cursor = conn.execute(
        "INSERT INTO events (body, received_at) VALUES (?, ?)",
        (
            json.dumps(event.to_json(), ensure_ascii=False, default=str),
            event.received_at.timestamp(),
        ),
    )
    return int(cursor.lastrowid or 0)


def get_event(conn: sqlite3.Connection, event_id: int) -> Event | None:
    row = conn.execute("SELECT body FROM events WHERE id = ?", (event_id,)).fetchone()
    return Event.from_json(json.loads(row["body"])) if row else None


# --- jobs ------------------------------------------------------------------------------------


def add_job(
    conn: sqlite3.Connection,
    intent: Intent,
    event_id: int | None,
    now: float,
    *,
    segments: int = 0,
    not_before: float | None = None,
) -> int:
    """Queue one message (with its estimated segments); it is due at `not_before` (or now)."""
    cursor = conn.execute(
        """INSERT INTO jobs (output, recipient, text, payload, rule, event_id, conversation,
                             retry_ambiguous, state, next_at, created_at, updated_at, segments)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)""",
        (
            intent.output,
            intent.recipient,
            intent.text,
            json.dumps(dict(intent.payload), ensure_ascii=False, default=str),
            intent.rule,
            event_id,
            json.dumps(intent.conversation.to_json()) if intent.conversation else None,
            int(intent.retry_ambiguous),
            now if not_before is None else not_before,
            now,
            now,
            segments,
        ),
    )
    return int(cursor.lastrowid or 0)


def claim(conn: sqlite3.Connection, output: str, now: float, limit: int) -> list[JobRecord]:
    """Mark up to `limit` due jobs of an output as sending and return them, oldest first."""
    rows = conn.execute(
        """UPDATE jobs SET state = 'sending', updated_at = ?
           WHERE id IN (SELECT id FROM jobs WHERE state = 'pending' AND output = ?
                        AND next_at <= ? ORDER BY next_at, id LIMIT ?)
           RETURNING *""",
        (now, output, now, limit),
    ).fetchall()
    return sorted((_record(row) for row in rows), key=lambda record: record.id)


def next_due(conn: sqlite3.Connection, output: str) -> float | None:
    """When the output's earliest pending job is due, or None when it has none."""
    row = conn.execute(
        "SELECT min(next_at) AS due FROM jobs WHERE state = 'pending' AND output = ?", (output,)
    ).fetchone()
    return None if row is None or row["due"] is None else float(row["due"])


def mark_sent(
    conn: sqlite3.Connection, job_id: int, now: float, ref: str, segments: int, cost: Decimal
) -> None:
    conn.execute(
        """UPDATE jobs SET state = 'sent', updated_at = ?, attempts = attempts + 1, ref = ?,
                  segments = ?, cost = ?, reason = '', code = '' WHERE id = ?""",
        (now, ref, segments, str(cost), job_id),
    )


def mark_retry(
    conn: sqlite3.Connection,
    job_id: int,
    now: float,
    next_at: float,
    reason: str,
    code: str,
    *,
    attempt: bool = True,
) -> None:
    """Put a job back to wait until `next_at`; a hold (attempt=False) uses up no attempt."""
    conn.execute(
        """UPDATE jobs SET state = 'pending', updated_at = ?, attempts = attempts + ?,
                  next_at = ?, reason = ?, code = ? WHERE id = ?""",
        (now, int(attempt), next_at, reason, code, job_id),
    )


def mark_final(
    conn: sqlite3.Connection, job_id: int, state: JobState, now: float, reason: str, code: str
) -> None:
    """Settle a job as failed or unknown, with a reason a person can read."""
    conn.execute(
        """UPDATE jobs SET state = ?, updated_at = ?, attempts = attempts + 1, reason = ?,
                  code = ? WHERE id = ?""",
        (state.value, now, reason, code, job_id),
    )


def in_flight(conn: sqlite3.Connection) -> list[JobRecord]:
    """Jobs claimed by a process that stopped before recording their outcome."""
    rows = conn.execute("SELECT * FROM jobs WHERE state = 'sending' ORDER BY id").fetchall()
    return [_record(row) for row in rows]


def release_held_for_balance(conn: sqlite3.Connection, now: float) -> int:
    """Make jobs waiting for a top-up (-9, -11) due now; returns how many."""
    cursor = conn.execute(
        """UPDATE jobs SET next_at = ? WHERE state = 'pending' AND code IN ('-9', '-11')
           AND next_at > ?""",
        (now, now),
    )
    return cursor.rowcount


def job_states(conn: sqlite3.Connection) -> dict[str, int]:
    """How many jobs are in each state."""
    rows = conn.execute("SELECT state, count(*) AS n FROM jobs GROUP BY state").fetchall()
    return {row["state"]: row["n"] for row in rows}


def oldest_pending(conn: sqlite3.Connection) -> float | None:
    """Creation time of the oldest job not yet settled."""
    row = conn.execute(
        "SELECT min(created_at) AS t FROM jobs WHERE state IN ('pending', 'sending')"
    ).fetchone()
    return None if row["t"] is None else float(row["t"])


def sends_since(conn: sqlite3.Connection, output: str, recipient: str, since: float) -> int:
    """Messages queued for a recipient since a time (all states but failed count)."""
    row = conn.execute(
        """SELECT count(*) AS n FROM jobs WHERE output = ? AND recipient = ? AND created_at >= ?
           AND state != 'failed'""",
        (output, recipient, since),
    ).fetchone()
    return int(row["n"])


def first_send_since(
    conn: sqlite3.Connection, output: str, recipient: str, since: float
) -> float | None:
    row = conn.execute(
        """SELECT min(created_at) AS t FROM jobs WHERE output = ? AND recipient = ?
           AND created_at >= ? AND state != 'failed'""",
        (output, recipient, since),
    ).fetchone()
    return None if row["t"] is None else float(row["t"])


def segments_since(conn: sqlite3.Connection, outputs: Iterable[str], since: float) -> int:
    """Segments queued on SMS outputs since a time (estimated, or billed once sent)."""
    names = list(outputs)
    if not names:
        return 0
    marks = ",".join("?" * len(names))
    row = conn.execute(
        f"""SELECT coalesce(sum(segments), 0) AS n FROM jobs
            WHERE output IN ({marks}) AND created_at >= ? AND state != 'failed'""",  # noqa: S608 - only placeholders are interpolated
        (*names, since),
    ).fetchone()
    return int(row["n"])


def record_delivery(
    conn: sqlite3.Connection, ref: str, recipient: str, delivery: str, carrier_code: str
) -> list[JobRecord]:
    """Attach a delivery report to the jobs it belongs to (by msgid and number)."""
    rows = conn.execute(
        """UPDATE jobs SET delivery = ?, carrier_code = ? WHERE ref = ? AND recipient = ?
           RETURNING *""",
        (delivery, carrier_code, ref, recipient),
    ).fetchall()
    return [_record(row) for row in rows]


# --- de-duplication ----------------------------------------------------------------------------


def seen_within(conn: sqlite3.Connection, key: str, now: float, window: float) -> bool:
    """True if `key` was recorded within its window; otherwise record it for `window` seconds."""
    row = conn.execute("SELECT expires_at FROM dedupe WHERE key = ?", (key,)).fetchone()
    if row is not None and row["expires_at"] > now:
        return True
    conn.execute(
        "INSERT OR REPLACE INTO dedupe (key, expires_at) VALUES (?, ?)", (key, now + window)
    )
    return False


def forget(conn: sqlite3.Connection, key: str) -> None:
    conn.execute("DELETE FROM dedupe WHERE key = ?", (key,))


def first_time(conn: sqlite3.Connection, key: str, now: float) -> bool:
    """True the first time a polled record's key is seen (reads may repeat records)."""
    cursor = conn.execute(
        "INSERT OR IGNORE INTO seen_records (key, seen_at) VALUES (?, ?)", (key, now)
    )
    return cursor.rowcount == 1


def expire(conn: sqlite3.Connection, now: float, keep_records: float) -> None:
    """Drop dedupe keys past their window and polled-record keys older than `keep_records`."""
    conn.execute("DELETE FROM dedupe WHERE expires_at <= ?", (now,))
    conn.execute("DELETE FROM seen_records WHERE seen_at < ?", (now - keep_records,))
    conn.execute("DELETE FROM conversations WHERE expires_at <= ?", (now,))


# --- conversations -----------------------------------------------------------------------------


def record_conversation(
    conn: sqlite3.Connection,
    mobile: str,
    job_id: int,
    event_id: int | None,
    conversation: Conversation | None,
    now: float,
    ttl: float,
) -> int:
    cursor = conn.execute(
        """INSERT INTO conversations (mobile, job_id, event_id, conversation, created_at,
                                      expires_at) VALUES (?, ?, ?, ?, ?, ?)""",
        (
            mobile,
            job_id,
            event_id,
            json.dumps(conversation.to_json()) if conversation else None,
            now,
            now + ttl,
        ),
    )
    return int(cursor.lastrowid or 0)


@dataclass(frozen=True, slots=True)
class OpenConversation:
    """The latest live conversation with a number, and the event the SMS was about."""

    id: int
    job_id: int
    event_id: int | None
    conversation: Conversation | None


def latest_conversation(
    conn: sqlite3.Connection, mobile: str, now: float, conversation_id: int | None = None
) -> OpenConversation | None:
    """The most recent live conversation with `mobile`, or the one with the given id."""
    query = "SELECT * FROM conversations WHERE mobile = ? AND expires_at > ?"
    params: tuple[Any, ...] = (mobile, now)
    if conversation_id is not None:
        query += " AND id = ?"
        params = (*params, conversation_id)
    row = conn.execute(query + " ORDER BY created_at DESC, id DESC LIMIT 1", params).fetchone()
    if row is None:
        return None
    raw = row["conversation"]
    return OpenConversation(
        id=row["id"],
        job_id=row["job_id"],
        event_id=row["event_id"],
        conversation=Conversation.from_json(json.loads(raw)) if raw else None,
    )


# --- grouping and holding ----------------------------------------------------------------------


def add_group_member(
    conn: sqlite3.Connection,
    rule: str,
    group_key: str,
    output: str,
    recipient: str,
    event_id: int,
    now: float,
    wait: float,
) -> None:
    """Add an event to its pending group; the group flushes `wait` after its first member."""
    row = conn.execute(
        """SELECT min(flush_at) AS f FROM group_members
           WHERE rule = ? AND group_key = ? AND output = ? AND recipient = ?""",
        (rule, group_key, output, recipient),
    ).fetchone()
    flush_at = row["f"] if row["f"] is not None else now + wait
    conn.execute(
        """INSERT INTO group_members (rule, group_key, output, recipient, event_id, flush_at,
                                      created_at) VALUES (?, ?, ?, ?, ?, ?, ?)""",
        (rule, group_key, output, recipient, event_id, flush_at, now),
    )


@dataclass(frozen=True, slots=True)
class DueGroup:
    """A group whose wait is over: its members, oldest first."""

    rule: str
    group_key: str
    output: str
    recipient: str
    event_ids: tuple[int, ...]


def take_due_groups(conn: sqlite3.Connection, now: float) -> list[DueGroup]:
    """Remove and return every group due by now."""
    rows = conn.execute(
        """DELETE FROM group_members WHERE flush_at <= ?
           RETURNING rule, group_key, output, recipient, event_id, id""",
        (now,),
    ).fetchall()
    groups: dict[tuple[str, str, str, str], list[tuple[int, int]]] = {}
    for row in rows:
        key = (row["rule"], row["group_key"], row["output"], row["recipient"])
        groups.setdefault(key, []).append((row["id"], row["event_id"]))
    return [
        DueGroup(*key, event_ids=tuple(event for _, event in sorted(members)))
        for key, members in sorted(groups.items())
    ]


def next_group_flush(conn: sqlite3.Connection) -> float | None:
    row = conn.execute("SELECT min(flush_at) AS f FROM group_members").fetchone()
    return None if row["f"] is None else float(row["f"])


def hold(
    conn: sqlite3.Connection,
    output: str,
    recipient: str,
    rule: str,
    names: Sequence[str],
    reason: str,
    now: float,
) -> None:
    """Record messages held back (by a cap or the budget), one row per alert name."""
    conn.executemany(
        "INSERT INTO held (output, recipient, rule, name, reason, created_at) VALUES (?,?,?,?,?,?)",
        [(output, recipient, rule, name, reason, now) for name in names],
    )


@dataclass(frozen=True, slots=True)
class HeldSummary:
    """What was held back for one recipient: counts by alert name."""

    output: str
    recipient: str
    first_held: float
    counts: dict[str, int]
    reasons: tuple[str, ...]


def held_recipients(conn: sqlite3.Connection, before: float) -> list[tuple[str, str]]:
    """Recipients with messages held back since before `before`."""
    rows = conn.execute(
        """SELECT output, recipient FROM held GROUP BY output, recipient
           HAVING min(created_at) <= ?""",
        (before,),
    ).fetchall()
    return [(row["output"], row["recipient"]) for row in rows]


def take_held(conn: sqlite3.Connection, output: str, recipient: str) -> HeldSummary | None:
    """Remove and summarise everything held for a recipient."""
    rows = conn.execute(
        "DELETE FROM held WHERE output = ? AND recipient = ? RETURNING name, reason, created_at",
        (output, recipient),
    ).fetchall()
    if not rows:
        return None
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["name"]] = counts.get(row["name"], 0) + 1
    return HeldSummary(
        output=output,
        recipient=recipient,
        first_held=min(row["created_at"] for row in rows),
        counts=counts,
        reasons=tuple(sorted({row["reason"] for row in rows})),
    )


# --- raw poll answers --------------------------------------------------------------------------


def store_raw(conn: sqlite3.Connection, account: str, action: str, body: bytes, now: float) -> int:
    """Keep a destructive read's answer before anything is done with it."""
    cursor = conn.execute(
        "INSERT INTO raw_polls (account, action, body, received_at) VALUES (?, ?, ?, ?)",
        (account, action, body, now),
    )
    return int(cursor.lastrowid or 0)


def unprocessed_raw(conn: sqlite3.Connection) -> list[tuple[int, str, str, bytes]]:
    rows = conn.execute(
        "SELECT id, account, action, body FROM raw_polls WHERE processed_at IS NULL ORDER BY id"
    ).fetchall()
    return [(row["id"], row["account"], row["action"], bytes(row["body"])) for row in rows]


def mark_processed(conn: sqlite3.Connection, raw_id: int, now: float) -> None:
    conn.execute("UPDATE raw_polls SET processed_at = ? WHERE id = ?", (now, raw_id))


# --- settings ------------------------------------------------------------------------------------


def get_setting(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row["value"])


def put_setting(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, value))
