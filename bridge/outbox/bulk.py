"""Bulk sends in the store: each row of a run queued once as a job below pages, and its progress.

A run is named by the hash of its file (and template): its rows map to the jobs they queued, so
a second run of the same file queues only the rows the first did not. Functions here run inside
a Store.write()/read() call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import bridge.outbox.jobs as outbox
from bridge.events import Event, EventKind, Intent
from bridge.store import Connection

RANK = 1  # claimed after every page and rule SMS that is due
SOURCE = "bulk"


def rule_of(run: str) -> str:
    """The rule name a run's jobs carry: history shows it, the run's own sender claims by it."""
    return f"{SOURCE}:{run[:12]}"


@dataclass(frozen=True, slots=True)
class BulkMessage:
    """One row of a file, checked: its number, the text it receives, and the job's extras."""

    row: int
    number: str
    text: str
    segments: int  # estimated
    payload: Mapping[str, Any] = field(default_factory=dict)


def queued_rows(conn: Connection, run: str) -> set[int]:
    """The rows of a run that have a job already."""
    rows = conn.execute("SELECT row FROM bulk_rows WHERE run = ?", (run,)).fetchall()
    return {int(row["row"]) for row in rows}


def queue(
    conn: Connection, run: str, output: str, messages: Sequence[BulkMessage], now: float
) -> int:
    """Queue the messages whose rows have no job yet (never resent when ambiguous); how many."""
    done = queued_rows(conn, run)
    event = Event(kind=EventKind.COMMAND, source=SOURCE)  # stands in; bulk jobs have none stored
    rule = rule_of(run)
    queued = 0
    for message in messages:
        if message.row in done:
            continue
        intent = Intent(
            output=output,
            recipient=message.number,
            text=message.text,
            rule=rule,
            event=event,
            retry_ambiguous=False,
            payload={**message.payload, "row": message.row},
        )
        job_id = outbox.add_job(conn, intent, None, now, segments=message.segments, rank=RANK)
        conn.execute(
            "INSERT INTO bulk_rows (run, row, job_id, created_at) VALUES (?, ?, ?, ?)",
            (run, message.row, job_id, now),
        )
        queued += 1
    return queued


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a run's jobs stand."""

    total: int = 0
    waiting: int = 0  # queued or retrying
    sending: int = 0
    held: int = 0
    sent: int = 0
    failed: int = 0
    unknown: int = 0
    segments: int = 0  # billed, of the sent
    cost: Decimal = Decimal(0)  # billed, of the sent
    holds: tuple[str, ...] = ()  # the reasons of held jobs, each once
    failures: tuple[tuple[int, str], ...] = ()  # (row, reason) of failed and unknown jobs

    @property
    def settled(self) -> int:
        return self.sent + self.failed + self.unknown

    @property
    def moving(self) -> bool:
        """True while a job may still go out without a person's help (a hold needs one)."""
        return self.waiting + self.sending > 0


def progress(conn: Connection, run: str) -> Progress:
    """The run's jobs counted by state, with the billed figures and the reasons."""
    rows = conn.execute(
        """SELECT b.row, j.state, j.code, j.reason, j.segments, j.cost
           FROM bulk_rows b JOIN jobs j ON j.id = b.job_id WHERE b.run = ? ORDER BY b.row""",
        (run,),
    ).fetchall()
    counts = dict.fromkeys(("waiting", "sending", "held", "sent", "failed", "unknown"), 0)
    segments, cost = 0, Decimal(0)
    holds: dict[str, None] = {}
    failures: list[tuple[int, str]] = []
    for row in rows:
        state = row["state"]
        if state == outbox.JobState.PENDING:
            if row["code"] in outbox.HOLDS:
                counts["held"] += 1
                holds[row["reason"]] = None
            else:
                counts["waiting"] += 1
        else:
            counts[state] += 1
        if state == outbox.JobState.SENT:
            segments += int(row["segments"])
            cost += Decimal(row["cost"])
        elif state in (outbox.JobState.FAILED, outbox.JobState.UNKNOWN):
            failures.append((int(row["row"]), str(row["reason"])))
    return Progress(
        total=len(rows),
        segments=segments,
        cost=cost,
        holds=tuple(holds),
        failures=tuple(failures),
        **counts,
    )


_OF_RUN = "id IN (SELECT job_id FROM bulk_rows WHERE run = ?)"
_HELD = "state = 'pending' AND code IN (?, ?)"


def hold_waiting(conn: Connection, run: str) -> int:
    """Hold a run's waiting jobs with the hold one of them met (a low balance, a paused
    account), instead of each making a call that would be refused the same way; how many."""
    cursor = conn.execute(
        f"""UPDATE jobs SET (next_at, code, reason) =
               (SELECT h.next_at, h.code, h.reason FROM jobs h WHERE h.{_HELD} AND h.{_OF_RUN}
                ORDER BY h.updated_at DESC LIMIT 1)
           WHERE state = 'pending' AND code NOT IN (?, ?) AND {_OF_RUN}
           AND EXISTS (SELECT 1 FROM jobs h WHERE h.{_HELD} AND h.{_OF_RUN})""",  # noqa: S608 - fixed SQL
        (*outbox.HOLDS, run, *outbox.HOLDS, run, *outbox.HOLDS, run),
    )
    return cursor.rowcount


def release_held(conn: Connection, run: str, now: float) -> int:
    """Make a run's held jobs due now (a run started again: the hold may have lifted; if it
    still stands, the first call says so and they are held again); how many."""
    cursor = conn.execute(
        # No longer marked held: they wait for their call like any queued job.
        f"UPDATE jobs SET next_at = ?, code = '', reason = '' WHERE {_HELD} AND {_OF_RUN}",  # noqa: S608 - fixed SQL
        (now, *outbox.HOLDS, run),
    )
    return cursor.rowcount


def settle_stale(conn: Connection, run: str, before: float, now: float) -> int:
    """A run's jobs left 'sending' since before `before` (a sender that died mid-call): they
    may have gone out, so they are settled unknown and never resent. Returns how many."""
    cursor = conn.execute(
        """UPDATE jobs SET state = 'unknown', updated_at = ?, attempts = attempts + 1,
                  reason = 'interrupted while sending: it may have gone out, so it is not resent',
                  code = 'interrupted'
           WHERE state = 'sending' AND updated_at < ?
           AND id IN (SELECT job_id FROM bulk_rows WHERE run = ?)""",
        (now, before, run),
    )
    return cursor.rowcount
