"""A person's hand on one queued message: retry it, cancel it, release it from its hold.

Each function runs inside a Store.write() call; a running daemon's dispatcher finds the change
on its next look at the queue (it looks at least every few seconds).
"""

from __future__ import annotations

from dataclasses import dataclass

import bridge.outbox.jobs as outbox
from bridge.store import Connection, Row

CANCELLED = "cancelled"  # the code of a job a person cancelled


class JobActionError(Exception):
    """The action does not apply to the job as it stands (the message says why)."""


@dataclass(frozen=True, slots=True)
class JobAction:
    """What an action did to a job: its output (to wake) and a sentence for the person."""

    job_id: int
    output: str
    done: str


def _job(conn: Connection, job_id: int) -> Row:
    row: Row | None = conn.execute(
        "SELECT id, output, state, code, attempts FROM jobs WHERE id = ?", (job_id,)
    ).fetchone()
    if row is None:
        raise JobActionError(f"no message {job_id} (retention may have removed it)")
    return row


def _held(row: Row) -> bool:
    return row["state"] == outbox.JobState.PENDING and row["code"] in outbox.HOLDS


def retry_job(conn: Connection, job_id: int, now: float, reason: str) -> JobAction:
    """Send a failed, unknown or waiting message again now, its attempts counted afresh.

    An unknown message may have reached the phone: retrying it is a person's decision, never ours.
    """
    row = _job(conn, job_id)
    state = row["state"]
    if _held(row):
        raise JobActionError(f"message {job_id} is held ({row['code']}): release it instead")
    if state not in (outbox.JobState.FAILED, outbox.JobState.UNKNOWN, outbox.JobState.PENDING):
        raise JobActionError(f"message {job_id} is {state}: only failed, unknown or waiting ones")
    conn.execute(
        """UPDATE jobs SET state = 'pending', next_at = ?, updated_at = ?, attempts = 0,
                  reason = ?, code = '', delivery = '', carrier_code = '' WHERE id = ?""",
        (now, now, reason, job_id),
    )
    if state == outbox.JobState.PENDING:
        return JobAction(job_id, row["output"], f"message {job_id} is due now")
    return JobAction(job_id, row["output"], f"message {job_id} ({state}) queued again")


def cancel_job(conn: Connection, job_id: int, now: float, reason: str) -> JobAction:
    """Fail a message that has not gone out (queued, retrying or held), with `reason`."""
    row = _job(conn, job_id)
    if row["state"] != outbox.JobState.PENDING:
        what = "being sent now" if row["state"] == outbox.JobState.SENDING else row["state"]
        raise JobActionError(f"message {job_id} is {what}: only a waiting one can be cancelled")
    # Not counted as an attempt: nothing was tried.
    conn.execute(
        """UPDATE jobs SET state = 'failed', updated_at = ?, reason = ?, code = ?
           WHERE id = ? AND state = 'pending'""",
        (now, reason, CANCELLED, job_id),
    )
    return JobAction(job_id, row["output"], f"message {job_id} cancelled: it will not be sent")


def release_job(conn: Connection, job_id: int, now: float) -> JobAction:
    """Make a held message due now; a hold that still stands holds it again without a send."""
    row = _job(conn, job_id)
    if not _held(row):
        raise JobActionError(f"message {job_id} is not held")
    conn.execute("UPDATE jobs SET next_at = ? WHERE id = ?", (now, job_id))
    return JobAction(job_id, row["output"], f"message {job_id} released: it is due now")
