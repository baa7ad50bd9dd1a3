"""From events to durable jobs in one commit: rules applied, repeats suppressed, SMS queued."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

import bridge.intake.conversations as conversations
import bridge.intake.holding as holding
import bridge.intake.limits as limits
import bridge.intake.posts as posts
from bridge.events import Event, EventKind, Intent, Status
from bridge.intake.conversations import ConversationSettings
from bridge.intake.deferred import DeferredLog
from bridge.intake.limits import StormSettings
from bridge.metrics import Metrics
from bridge.outbox import jobs as outbox
from bridge.rules import Decision, Directory, RuleSet, SmsAction
from bridge.sms import mask_number
from bridge.store import Connection, Store, ledger

Clock = Callable[[], float]
# Put in `touched` when storm state (a group member, a held message) was written: the storm loop
# then looks again; plain sends leave it asleep.
STORM = "storm:"
# Put in `touched` when paging wrote timers (a step, a report timeout): the timer task looks again.
PAGING = "paging:"
Estimator = Callable[[str, str], int]  # (output, text) -> segments


def _alert_name(event: Event) -> str:
    return event.labels.get("alertname") or event.text[:40] or event.kind.value


class Paging(Protocol):
    """Paging, as the engine calls it inside its transactions; each returns the jobs queued."""

    def alert(
        self,
        conn: Connection,
        decision: Decision,
        event_id: int,
        now: float,
        touched: set[str],
    ) -> int:
        """A `page` rule matched: open (or add to, or resolve) the alert group's incident."""
        ...

    def reply(
        self,
        conn: Connection,
        source: str,
        mobile: str,
        text: str,
        now: float,
        touched: set[str],
    ) -> tuple[int, bool]:
        """Act on a reply if it is a paging command: the jobs queued (an answer, notices, a
        help answer), and whether it was one (else it is forwarded as any reply is)."""
        ...

    def report(
        self, conn: Connection, job_id: int, status: str, now: float, touched: set[str]
    ) -> int:
        """A delivery report settled a job: a failed page may escalate at once."""
        ...


class Pipeline:
    """Turns events into jobs; every write happens inside the caller's store transaction."""

    def __init__(
        self,
        store: Store,
        rules: RuleSet,
        *,
        sms_outputs: Mapping[str, Estimator],
        metrics: Metrics,
        log: Any,
        storm: StormSettings | None = None,
        clock: Clock = time.time,
        wake: Callable[[Iterable[str]], None] = lambda outputs: None,
        directory: Directory | None = None,
        conversations: ConversationSettings | None = None,
        price: Decimal = Decimal("0.10"),
    ) -> None:
        self.store = store
        self.paging: Paging | None = None  # set when the config pages (`oncall`)
        self.directory = directory or Directory({}, {})
        self.conversations = conversations or ConversationSettings()
        self.price = price
        self.rules = rules
        self.sms_outputs = sms_outputs
        self.metrics = metrics
        self.log = log
        self.notes = DeferredLog()  # what happens inside a transaction is logged after it
        # Event bodies encoded before the transaction, by id(event) (see `encode_ahead`).
        self.encoded: dict[int, bytes] = {}
        self.storm = storm or StormSettings()
        self.clock = clock
        self.wake = wake

    # --- deciding (pure, outside any transaction) and applying (inside one) ---------------

    def decide(self, event: Event, when: datetime) -> list[Decision]:
        """The rules' decisions; rules skipped only by their time window are counted."""
        decisions, outside = self.rules.evaluate_windows(event, when)
        for rule in outside:
            self.metrics.suppressed.labels(rule, "window").inc()
            self.log.info(
                "event_outside_window",
                rule=rule,
                kind=event.kind.value,
                alertname=event.labels.get("alertname", ""),
            )
        return decisions

    def apply(
        self,
        conn: Connection,
        event: Event,
        decisions: Sequence[Decision],
        now: float,
        touched: set[str],
    ) -> int:
        """Write what the decisions about one event call for; returns the jobs queued."""
        if not decisions:
            return self._fallback(conn, event, now, touched)
        event_id = self.add_event(conn, event)
        jobs = 0
        for decision in decisions:
            if decision.sms is not None:
                jobs += self._sms(conn, decision, decision.sms, event_id, now, touched)
            if decision.post is not None:
                jobs += posts.post_rule(conn, decision, event_id, now, touched, self.notes)
            if decision.page is not None:
                jobs += self._page(conn, decision, event_id, now, touched)
        return jobs

    def _page(
        self,
        conn: Connection,
        decision: Decision,
        event_id: int,
        now: float,
        touched: set[str],
    ) -> int:
        if self.paging is None:
            self.notes.error("page_skipped", rule=decision.rule, reason="paging is not configured")
            return 0
        return self.paging.alert(conn, decision, event_id, now, touched)

    # --- SMS -----------------------------------------------------------------------------------

    def _sms(
        self,
        conn: Connection,
        decision: Decision,
        action: SmsAction,
        event_id: int,
        now: float,
        touched: set[str],
    ) -> int:
        event = decision.event
        if not action.wants(event):
            # Fix: a resolution that sends nothing (send_resolved: false) still ends the alert's
            # episode; without this the next firing was suppressed as a repeat.
            for recipient in action.recipients_for(event):
                self._is_repeat(conn, decision, action, recipient.number, now)
            return 0
        text = decision.render("sms")
        jobs = 0
        for recipient in action.recipients_for(event):
            if self._is_repeat(conn, decision, action, recipient.number, now):
                continue
            if action.group_wait > timedelta(0):
                holding.add_group_member(
                    conn,
                    decision.rule,
                    decision.group_key(),
                    action.output,
                    recipient.number,
                    event_id,
                    now,
                    action.group_wait.total_seconds(),
                )
                touched.add(STORM)
                jobs += 1  # decided now, sent as part of the group's summary
                continue
            jobs += (
                1
                if self.queue_sms(
                    conn,
                    decision.rule,
                    action,
                    recipient.number,
                    text,
                    [event],
                    event_id,
                    now,
                    touched,
                )
                else 0
            )
        return jobs

    def _is_repeat(
        self,
        conn: Connection,
        decision: Decision,
        action: SmsAction,
        number: str,
        now: float,
    ) -> bool:
        event = decision.event
        window = action.repeat_interval.total_seconds()
        if not window or not event.fingerprint:
            return False
        base = f"repeat|{decision.rule}|{event.fingerprint}|{number}|"
        # A change of status is news: once resolved, the next firing is; once firing again, so
        # is the next resolution. (Fix: only the firing key used to be forgotten, so a second
        # episode's resolution within repeat_interval was suppressed as a repeat of the first.)
        other = Status.FIRING if event.status is Status.RESOLVED else Status.RESOLVED
        ledger.forget(conn, base + other.value)
        if not action.wants(event):
            return False  # nothing to send; only the episode's end is recorded above
        if ledger.seen_within(conn, base + event.status.value, now, window):
            self.metrics.suppressed.labels(decision.rule, "repeat").inc()
            self.notes.info(
                "sms_suppressed",
                reason="repeat",
                rule=decision.rule,
                to=mask_number(number),
                fingerprint=event.fingerprint,
            )
            return True
        return False

    def queue_sms(
        self,
        conn: Connection,
        rule: str,
        action: SmsAction,
        number: str,
        text: str,
        events: Sequence[Event],
        event_id: int | None,
        now: float,
        touched: set[str],
    ) -> int:
        """Queue one SMS; returns its job id, or 0 when a cap or the budget held it back.

        An SMS written from a chat thread, to a number with other open conversations, ends in
        a reply code ("#2") so its replies can say which thread they answer. Pages keep their
        text as the rule made it: their replies go to the newest alert.
        """
        # Only SMS from a chat thread take a reply code: the others (alerts, summaries) leave
        # the number's codes to what needs them, so a page after an alert SMS is still `1a`.
        code = 0
        from_chat = events[-1].conversation is not None and events[-1].kind is EventKind.COMMAND
        if from_chat and self.conversations.reply_codes:
            code, open_count = conversations.next_code(conn, number, now)
            if open_count:
                text = f"{text} #{code}"
        segments = (
            self.sms_outputs[action.output](action.output, text)
            if (action.output in self.sms_outputs)
            else 0
        )
        reason = limits.held_reason(
            conn, self.storm, self.sms_outputs, action, number, segments, now
        )
        if reason:
            names = [_alert_name(event) for event in events]
            holding.hold(conn, action.output, number, rule, names, reason, now)
            touched.add(STORM)
            self.metrics.suppressed.labels(rule, reason).inc(len(names))
            self.notes.warning(
                "sms_held", reason=reason, rule=rule, to=mask_number(number), alerts=len(names)
            )
            return 0
        event = events[-1]
        intent = Intent(
            output=action.output,
            recipient=number,
            text=text,
            rule=rule,
            event=event,
            conversation=event.conversation,
            retry_ambiguous=action.retry_ambiguous,
            payload={"alerts": len(events)},
        )
        job_id = outbox.add_job(conn, intent, event_id, now, segments=segments)
        conversations.record_conversation(
            conn, number, job_id, event_id, event.conversation, now, self.conversations.ttl, code
        )
        touched.add(action.output)
        return job_id

    def add_event(self, conn: Connection, event: Event) -> int:
        """Store an event's context (replies and reports carry it back later)."""
        return outbox.add_event(conn, event, self.encoded.get(id(event)))

    def encode_ahead(self, events: Iterable[Event]) -> None:
        """Encode these events' bodies now, so the transaction that stores them does not."""
        for event in events:
            self.encoded[id(event)] = outbox.encode_event(event)

    def flush_log(self, log: Any) -> None:
        """Write the log lines of committed transactions."""
        self.notes.flush(log)

    def estimate(self, output: str, text: str) -> tuple[int, Decimal]:
        """Segments and cost of one SMS on an SMS output."""
        segments = self.sms_outputs[output](output, text) if output in self.sms_outputs else 0
        return segments, self.price * segments

    def post_answer(
        self,
        conn: Connection,
        event: Event,
        text: str,
        event_id: int | None,
        now: float,
        touched: set[str],
        rule: str = "answer",
    ) -> int:
        """Post a text into the event's own conversation (a chat thread); 0 if it has none."""
        return posts.post_answer(conn, event, text, event_id, now, touched, self.notes, rule)

    def _fallback(self, conn: Connection, event: Event, now: float, touched: set[str]) -> int:
        """What happens without a matching rule: replies, and reports if configured, go home."""
        text = posts.fallback_text(event, self.directory, self.conversations.report_deliveries)
        if text is None:
            return 0
        event_id = self.add_event(conn, event)
        return self.post_answer(conn, event, text, event_id, now, touched, rule=event.kind.value)
