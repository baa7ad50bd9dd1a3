"""Jobs and the events they are about: queue, claim, settle, count.

Functions here take a sqlite3 connection and run inside a Store.write()/read() call, so a
caller composes several of them into one atomic, group-committed transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

import pydantic_core

import bridge.outbox.compression as compression
from bridge.events import Conversation, Event, Intent
from bridge.plugin import Job, OutcomeKind
from bridge.store import Connection, Row
from bridge.store.fragments import skip_locked

# A held job is pending with its code naming the hold: it uses no attempt, and comes due at
# once when its output says the outside world changed (a top-up, the account works again).
HOLDS = (OutcomeKind.HOLD.value, OutcomeKind.PAUSE_ACCOUNT.value)


class JobState(StrEnum):
    """Where a job stands; pending jobs with a future next_at wait to retry, or are held."""

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


def _record(row: Row) -> JobRecord:
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


def encode_event(event: Event) -> bytes:
    """An event as stored: compressed JSON (an alert's context compresses about fourfold).

    pydantic-core's encoder writes the same compact UTF-8 JSON as `json.dumps` with
    `ensure_ascii=False` in about a fifth of the time (bench/pipeline.py); what it cannot
    encode it writes as `str()` of it, as `default=str` did.
    """
    return compression.compress(pydantic_core.to_json(event.to_json(), fallback=str))


def add_event(conn: Connection, event: Event, body: bytes | None = None) -> int:
    """Store an event's context (replies and reports carry it back later).

    `body` is `encode_event(event)` made before the transaction, where the caller can.
    """
    cursor = conn.execute(
        "INSERT INTO events (body, received_at) VALUES (?, ?) RETURNING id",
        (body if body is not None else encode_event(event), event.received_at.timestamp()),
    )
    return int(cursor.fetchone()[0])


def get_event(conn: Connection, event_id: int) -> Event | None:
    row = conn.execute("SELECT body FROM events WHERE id = ?", (event_id,)).fetchone()
    if row is None:
        return None
    body = row["body"]
    # Stores written before compression hold the JSON text itself.
    text = compression.decompress(body) if isinstance(body, bytes) else body
    return Event.from_json(json.loads(text))


# --- jobs ------------------------------------------------------------------------------------


def add_job(
    conn: Connection,
    intent: Intent,
    event_id: int | None,
    now: float,
    *,
    segments: int = 0,
    not_before: float | None = None,
    rank: int = 0,
) -> int:
    """Queue one message (with its estimated segments); it is due at `not_before` (or now).

    Due jobs of a lower `rank` are claimed first: 0 for pages and rules, 1 for bulk sends.
    """
    cursor = conn.execute(
        """INSERT INTO jobs (output, recipient, text, payload, rule, event_id, conversation,
                             retry_ambiguous, state, next_at, created_at, updated_at, segments,
                             rank)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?)
           RETURNING id""",
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
            rank,
        ),
    )
    return int(cursor.fetchone()[0])


def claim(
    conn: Connection, output: str, now: float, limit: int, owner: str = "", rule: str | None = None
) -> list[JobRecord]:
    """Mark up to `limit` due jobs of an output (of one rule only, if given) as sending by
    `owner` (an instance) and return them; lower ranks are claimed first (a page before a bulk
    send), then the longest due. On PostgreSQL, jobs another instance is claiming are skipped,
    not waited for."""
    only = "" if rule is None else "AND rule = ?"
    rows = conn.execute(
        f"""UPDATE jobs SET state = 'sending', updated_at = ?, claimed_by = ?
            WHERE id IN (SELECT id FROM jobs WHERE state = 'pending' AND output = ?
                         AND next_at <= ? {only} ORDER BY rank, next_at, id
                         LIMIT ?{skip_locked(conn)})
            RETURNING *""",  # noqa: S608 - the interpolated text is fixed clauses
        (now, owner, output, now, *(() if rule is None else (rule,)), limit),
    ).fetchall()
    return sorted((_record(row) for row in rows), key=lambda record: record.id)


def next_due(conn: Connection, output: str, rule: str | None = None) -> float | None:
    """When the output's (or the rule's) earliest pending job is due, or None when none is."""
    if rule is None:
        row = conn.execute(
            "SELECT min(next_at) AS due FROM jobs WHERE state = 'pending' AND output = ?",
            (output,),
        ).fetchone()
    else:
        row = conn.execute(
            """SELECT min(next_at) AS due FROM jobs WHERE state = 'pending' AND output = ?
               AND rule = ?""",
            (output, rule),
        ).fetchone()
    return None if row is None or row["due"] is None else float(row["due"])


def mark_sent(
    conn: Connection, job_id: int, now: float, ref: str, segments: int, cost: Decimal
) -> None:
    conn.execute(
        """UPDATE jobs SET state = 'sent', updated_at = ?, attempts = attempts + 1, ref = ?,
                  segments = ?, cost = ?, reason = '', code = '' WHERE id = ?""",
        (now, ref, segments, str(cost), job_id),
    )


def mark_retry(
    conn: Connection,
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


def mark_held(
    conn: Connection,
    job_id: int,
    now: float,
    next_at: float,
    reason: str,
    hold: OutcomeKind,
) -> None:
    """Hold a job until `next_at` (or a release) without using an attempt; `hold` names why."""
    mark_retry(conn, job_id, now, next_at, reason, hold.value, attempt=False)


def unclaim(conn: Connection, job_ids: Iterable[int], now: float) -> None:
    """Give claimed jobs back, untouched: they were never handed to their output."""
    conn.executemany(
        "UPDATE jobs SET state = 'pending', updated_at = ? WHERE id = ? AND state = 'sending'",
        [(now, job_id) for job_id in job_ids],
    )


def mark_final(
    conn: Connection, job_id: int, state: JobState, now: float, reason: str, code: str
) -> None:
    """Settle a job as failed or unknown, with a reason a person can read."""
    conn.execute(
        """UPDATE jobs SET state = ?, updated_at = ?, attempts = attempts + 1, reason = ?,
                  code = ? WHERE id = ?""",
        (state.value, now, reason, code, job_id),
    )


def in_flight(
    conn: Connection, output: str | None = None, owners: Iterable[str] | None = None
) -> list[JobRecord]:
    """Jobs claimed by a worker that stopped before recording their outcome (of one output;
    of the given instances only, when `owners` is given: others may still be sending theirs)."""
    sql = "SELECT * FROM jobs WHERE state = 'sending'"
    params: list[Any] = []
    if output is not None:
        sql += " AND output = ?"
        params.append(output)
    if owners is not None:
        chosen = list(owners)
        if not chosen:
            return []
        sql += f" AND claimed_by IN ({','.join('?' * len(chosen))})"
        params.extend(chosen)
        sql += " ORDER BY id" + skip_locked(conn)  # two instances taking over one dead one
    else:
        sql += " ORDER BY id"
    rows = conn.execute(sql, params).fetchall()
    return [_record(row) for row in rows]


def release_held(conn: Connection, output: str, now: float) -> int:
    """Make an output's held jobs due now (its account works again); returns how many."""
    cursor = conn.execute(
        """UPDATE jobs SET next_at = ? WHERE state = 'pending' AND output = ? AND next_at > ?
           AND code IN (?, ?)""",
        (now, output, now, *HOLDS),
    )
    return cursor.rowcount


def job_states(conn: Connection) -> dict[str, int]:
    """How many jobs are in each state."""
    rows = conn.execute("SELECT state, count(*) AS n FROM jobs GROUP BY state").fetchall()
    return {row["state"]: row["n"] for row in rows}


def oldest_pending(conn: Connection) -> float | None:
    """Creation time of the oldest job not yet settled."""
    row = conn.execute(
        "SELECT min(created_at) AS t FROM jobs WHERE state IN ('pending', 'sending')"
    ).fetchone()
    return None if row["t"] is None else float(row["t"])


def sends_since(conn: Connection, output: str, recipient: str, since: float) -> int:
    """Messages queued for a recipient since a time (all states but failed count)."""
    row = conn.execute(
        """SELECT count(*) AS n FROM jobs WHERE output = ? AND recipient = ? AND created_at >= ?
           AND state != 'failed'""",
        (output, recipient, since),
    ).fetchone()
    return int(row["n"])


def first_send_since(conn: Connection, output: str, recipient: str, since: float) -> float | None:
    row = conn.execute(
        """SELECT min(created_at) AS t FROM jobs WHERE output = ? AND recipient = ?
           AND created_at >= ? AND state != 'failed'""",
        (output, recipient, since),
    ).fetchone()
    return None if row["t"] is None else float(row["t"])


def segments_since(conn: Connection, outputs: Iterable[str], since: float) -> int:
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


def sends_by_rule_since(conn: Connection, rule: str, since: float) -> int:
    """Messages a rule (or a chat user's commands) queued since a time, failed ones excluded."""
    row = conn.execute(
        "SELECT count(*) AS n FROM jobs WHERE rule = ? AND created_at >= ? AND state != 'failed'",
        (rule, since),
    ).fetchone()
    return int(row["n"])


def job_summary(conn: Connection, job_id: int) -> Row | None:
    """A job's recipient, state, attempts, reason and delivery, for `sms status`."""
    row: Row | None = conn.execute(
        """SELECT output, recipient, state, attempts, reason, delivery, carrier_code
           FROM jobs WHERE id = ?""",
        (job_id,),
    ).fetchone()
    return row


def record_delivery(
    conn: Connection, ref: str, recipient: str, delivery: str, carrier_code: str
) -> list[JobRecord]:
    """Attach a delivery report to the jobs it belongs to (by msgid and number)."""
    rows = conn.execute(
        # `ref != ''` lets SQLite use the partial index jobs_ref: without it every report
        # scanned the whole table (2 ms a report at 25,000 jobs, 16 µs with it).
        """UPDATE jobs SET delivery = ?, carrier_code = ?
           WHERE ref = ? AND ref != '' AND recipient = ? RETURNING *""",
        (delivery, carrier_code, ref, recipient),
    ).fetchall()
    return [_record(row) for row in rows]
