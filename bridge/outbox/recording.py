"""What became of each job, written down: sent, retried, held, failed or unknown; counted, logged.

Functions here run inside a Store.write() call, so one call's outcomes commit together.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import bridge.outbox.jobs as outbox
from bridge.metrics import Metrics
from bridge.outbox.jobs import JobRecord, JobState
from bridge.plugin import Outcome, OutcomeKind
from bridge.sms import mask_number
from bridge.store import Connection

HOLDS = (OutcomeKind.HOLD, OutcomeKind.PAUSE_ACCOUNT)
_SETTLED_EVENTS = {JobState.FAILED: "message_failed", JobState.UNKNOWN: "message_unknown"}


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long a job is retried before a person is told it failed."""

    base: float = 2.0  # seconds before the first retry
    factor: float = 2.0
    ceiling: float = 600.0  # never wait longer than this between tries
    max_attempts: int = 20  # then the job fails with the last reason
    max_hold: float = 86400.0  # a job held this long after it was queued fails with the reason

    def delay(self, attempts: int, suggested: float | None, jitter: float = 1.0) -> float:
        backoff = min(self.ceiling, self.base * self.factor ** max(attempts - 1, 0)) * jitter
        # The ceiling bounds a suggestion too: a held message is looked at again at least then.
        return min(self.ceiling, max(backoff, suggested or 0.0))


def display(record: JobRecord) -> str:
    """The recipient as logs may show it: a phone number masked."""
    return mask_number(record.recipient) if record.recipient.isdigit() else record.recipient


class Recorder:
    """Writes outcomes to the outbox and says so in metrics and logs."""

    def __init__(
        self,
        metrics: Metrics,
        log: Any,
        retry: RetryPolicy,
        on_failed: Callable[[JobRecord, str], None],
    ) -> None:
        self.metrics = metrics
        self.log = log
        self.retry = retry
        self.on_failed = on_failed

    def record(
        self,
        conn: Connection,
        name: str,
        record: JobRecord,
        outcome: Outcome,
        now: float,
        jitter: float = 1.0,
    ) -> None:
        if outcome.kind is OutcomeKind.SENT:
            self._sent(conn, name, record, outcome, now)
        elif outcome.kind in HOLDS:
            self._hold(conn, name, record, outcome, now, jitter)
        elif outcome.kind is OutcomeKind.RETRY:
            self._retry(
                conn, name, record, outcome.reason, outcome.code, outcome.retry_after, now, jitter
            )
        elif outcome.kind is OutcomeKind.FAILED:
            self.fail(conn, name, record, outcome.reason, outcome.code, now)
        else:
            self.settle_unknown(conn, record, outcome.reason, outcome.code, now, jitter)

    def _sent(
        self, conn: Connection, name: str, record: JobRecord, outcome: Outcome, now: float
    ) -> None:
        outbox.mark_sent(conn, record.id, now, outcome.ref, outcome.segments, outcome.cost)
        self.metrics.messages.labels(name, "sent").inc()
        self.metrics.segments.inc(outcome.segments)
        self.metrics.cost.inc(outcome.cost)
        self.log.info(
            "message_sent",
            output=name,
            job=record.id,
            to=display(record),
            ref=outcome.ref,
            segments=outcome.segments,
            cost=str(outcome.cost),
            attempt=record.attempts + 1,
            latency=round(now - record.created_at, 4),
        )

    def _retry(
        self,
        conn: Connection,
        name: str,
        record: JobRecord,
        reason: str,
        code: str,
        suggested: float | None,
        now: float,
        jitter: float = 1.0,
    ) -> None:
        attempts = record.attempts + 1
        if attempts >= self.retry.max_attempts:
            self.fail(conn, name, record, f"gave up after {attempts} attempts: {reason}", code, now)
            return
        delay = self.retry.delay(attempts, suggested, jitter)
        outbox.mark_retry(conn, record.id, now, now + delay, reason, code)
        self.metrics.retries.labels(name, code or "none").inc()
        self.log.warning(
            "message_retry",
            output=name,
            job=record.id,
            to=display(record),
            reason=reason,
            code=code,
            attempt=attempts,
            retry_in=round(delay, 1),
        )

    def _hold(
        self,
        conn: Connection,
        name: str,
        record: JobRecord,
        outcome: Outcome,
        now: float,
        jitter: float,
    ) -> None:
        """Hold without using an attempt; past the maximum hold age the job fails instead."""
        limit = self.retry.max_hold
        if now - record.created_at >= limit:
            reason = f"held for more than {_hours(limit)}: {outcome.reason}"
            self.fail(conn, name, record, reason, outcome.code, now)
            return
        delay = self.retry.delay(1, outcome.retry_after, jitter)
        outbox.mark_held(conn, record.id, now, now + delay, outcome.reason, outcome.kind)
        self.metrics.retries.labels(name, outcome.code or outcome.kind.value).inc()

    def fail(
        self,
        conn: Connection,
        name: str,
        record: JobRecord,
        reason: str,
        code: str,
        now: float,
    ) -> None:
        self._settle(conn, name, record, JobState.FAILED, reason, code, now)
        self.on_failed(record, reason)

    def settle_unknown(
        self,
        conn: Connection,
        record: JobRecord,
        reason: str,
        code: str,
        now: float,
        jitter: float = 1.0,
    ) -> None:
        """A job that may have been sent: resent where its rule allows, else settled unknown."""
        name = record.output
        if record.retry_ambiguous:
            self.log.warning(
                "message_ambiguous_retry",
                output=name,
                job=record.id,
                to=display(record),
                reason=reason,
                note="may already have been sent; resending as the rule allows",
            )
            reason = f"may have been sent ({reason})"
            self._retry(conn, name, record, reason, code, None, now, jitter)
            return
        self._settle(
            conn,
            name,
            record,
            JobState.UNKNOWN,
            reason,
            code,
            now,
            note="may or may not have been sent; not resent because the rule forbids duplicates",
        )

    def _settle(
        self,
        conn: Connection,
        name: str,
        record: JobRecord,
        state: JobState,
        reason: str,
        code: str,
        now: float,
        **context: str,
    ) -> None:
        """Mark a job failed or unknown for good, count it, and say why in the log."""
        outbox.mark_final(conn, record.id, state, now, reason, code)
        self.metrics.messages.labels(name, state.value).inc()
        self.log.error(
            _SETTLED_EVENTS[state],
            output=name,
            job=record.id,
            to=display(record),
            reason=reason,
            code=code,
            **context,
        )


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds:g} s"
