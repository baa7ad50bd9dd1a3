"""Telling people about incidents: pages, answers and notices queued as SMS, the incident's notice
with buttons in its thread, handoff texts, and the metrics of each change; the base of `Pager`,
every method inside the caller's Store.write() transaction."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial

import bridge.paging.escalation as escalation
import bridge.paging.handoffs as handoffs
import bridge.paging.hold as hold
import bridge.paging.incidents as incidents
from bridge.config.oncall import OncallConfig
from bridge.events import Conversation, Event, EventKind, Intent
from bridge.intake import Pipeline
from bridge.outbox import jobs as outbox
from bridge.paging.escalation import Escalation, IncidentPage
from bridge.paging.incidents import Change, Incident, Transition
from bridge.rules import Directory
from bridge.sms import mask_number
from bridge.store import Connection, timers

SOURCE = "paging"
PENDING_PAGE = (
    "SELECT incident_id, name, mobile FROM incident_pages WHERE id = ? AND status = 'pending'"
)
PENDING_JOB_PAGES = (
    "SELECT incident_id, name, mobile FROM incident_pages WHERE job_id = ? AND status = 'pending'"
)


def notice(transition: Transition) -> str:
    """One short line for the others paged: `Alice acknowledged #3 DiskFull`."""
    incident = transition.incident
    who = transition.by or "someone"
    return f"{who} {transition.change.value} #{incident.id} {incident.title}"


class Teller:
    """Queues what people are told about incidents (SMS through `output`, chat posts)."""

    def __init__(
        self, pipeline: Pipeline, oncall: OncallConfig, directory: Directory, output: str
    ) -> None:
        self.pipeline = pipeline
        self.oncall = oncall  # a reload makes a new Pager; incidents keep their stored timeline
        self.directory = directory
        self.output = output  # the SMS gateway, whose delivery reports drive the failover
        self._handoffs_set = False  # this config's handoff timers are in the store

    def _announce(
        self,
        conn: Connection,
        incident: Incident,
        started: Escalation,
        event_id: int,
        now: float,
        touched: set[str],
    ) -> int:
        """The incident's notice in its thread, with Ack and Close buttons where the platform
        has them (pressing one is `sms ack N`)."""
        conversation = incident.conversation
        if conversation is None:
            return 0
        names = ", ".join(dict.fromkeys(page.name for page in started.pages)) or "nobody yet"
        text = f"#{incident.id} {incident.title} - paging {names}"
        event = Event(EventKind.SYSTEM, SOURCE, text=text, conversation=conversation)
        intent = Intent(
            output=conversation.output,
            recipient=conversation.channel,
            text=text,
            rule=incident.rule,
            event=event,
            conversation=conversation,
            payload={
                "thread": conversation.thread,
                "rule": incident.rule,
                "buttons": [["Ack", f"ack {incident.id}"], ["Close", f"close {incident.id}"]],
            },
        )
        outbox.add_job(conn, intent, event_id, now)
        touched.add(conversation.output)
        return 1

    def _handoff(self, conn: Connection, timer: timers.Timer, now: float, touched: set[str]) -> int:
        """A handoff came: whoever comes on call is told (`handoff_sms`)."""
        told = handoffs.on_timer(conn, timer, self.oncall.schedules, self.directory, now)
        for item in told:
            event = Event(
                EventKind.SYSTEM, SOURCE, labels={"schedule": item.schedule}, text=item.text
            )
            self._sms(
                conn, item.recipient.number, item.text, event, None, "oncall-handoff", now, touched
            )
            self.pipeline.notes.info(
                "handoff_told", schedule=item.schedule, to=mask_number(item.recipient.number)
            )
        return len(told)

    def _warn_undelivered(self, conn: Connection, query: str, key: int, reason: str) -> None:
        """Log that a page did not arrive, naming the schedules whose member missed it (their
        next page may not arrive either)."""
        for row in conn.execute(query, (key,)).fetchall():
            self.pipeline.notes.warning(
                "page_undelivered",
                incident=row["incident_id"],
                member=row["name"],
                to=mask_number(row["mobile"]),
                reason=reason,
                schedules=handoffs.schedules_of(
                    self.oncall.schedules, self.directory, row["mobile"]
                ),
            )

    def _release(self, conn: Connection, timer: timers.Timer, now: float, touched: set[str]) -> int:
        """A quiet window ended: its held pages go out as one SMS, whose delivery report
        settles each of them."""
        pages = hold.held_pages(timer)
        first = incidents.get(conn, int(pages[0]["incident"])) if pages else None
        if first is None:
            return 0
        text = hold.digest_text(conn, pages)
        intent = Intent(self.output, timer.key, text, first.rule, self._event_of(conn, first))
        segments, _ = self.pipeline.estimate(self.output, text)
        job = outbox.add_job(conn, intent, first.event_id, now, segments=segments)
        for held in pages:
            escalation.attach_job(conn, int(held["page"]), job)
        touched.add(self.output)
        self.pipeline.notes.info("held_pages_released", to=mask_number(timer.key), pages=len(pages))
        return 1

    def _page(
        self,
        conn: Connection,
        incident: Incident,
        page: IncidentPage,
        event: Event,
        now: float,
        touched: set[str],
    ) -> int:
        # Not queue_sms: caps and budget never hold a page (a policy already bounds its pages).
        intent = Intent(
            output=self.output,
            recipient=page.mobile,
            text=page.text,
            rule=incident.rule,
            event=event,
            payload={"incident": page.incident, "page": page.page},
        )
        segments, _ = self.pipeline.estimate(self.output, page.text)
        job = outbox.add_job(conn, intent, incident.event_id, now, segments=segments)
        escalation.attach_job(conn, page.page, job)
        touched.add(self.output)
        self.pipeline.notes.count(self.pipeline.metrics.pages.labels(incident.policy).inc)
        self.pipeline.notes.info(
            "page_queued",
            incident=incident.id,
            step=page.step,
            to=mask_number(page.mobile),
            job=job,
        )
        return 1

    def _count(self, transition: Transition, now: float) -> None:
        """Metrics of a transition, counted once its transaction commits."""
        if not transition.changed:
            return
        metrics, notes = self.pipeline.metrics, self.pipeline.notes
        notes.count(metrics.incident_changes.labels(transition.change.value).inc)
        if transition.change is Change.ACKNOWLEDGED:
            waited = max(now - transition.incident.opened_at, 0.0)
            notes.count(partial(metrics.time_to_acknowledge.observe, waited))

    def _tell(
        self,
        conn: Connection,
        transition: Transition,
        replier: str,
        now: float,
        touched: set[str],
        *,
        answered: Conversation | None = None,
    ) -> int:
        """One short notice to the others paged (not the replier) and to the incident's thread
        (unless that thread is the one `answered` already)."""
        if not transition.changed or transition.change is Change.ACK_EXTENDED:
            return 0
        incident, text = transition.incident, notice(transition)
        event = self._event_of(conn, incident)
        jobs = 0
        for paged in transition.paged:
            if paged.mobile != replier:
                jobs += self._sms(
                    conn, paged.mobile, text, event, incident.event_id, incident.rule, now, touched
                )
        if incident.conversation is not None and incident.conversation != answered:
            jobs += self.pipeline.post_answer(
                conn,
                Event(EventKind.SYSTEM, SOURCE, text=text, conversation=incident.conversation),
                text,
                incident.event_id,
                now,
                touched,
                rule=incident.rule,
            )
        return jobs

    def _sms(
        self,
        conn: Connection,
        mobile: str,
        text: str,
        event: Event,
        event_id: int | None,
        rule: str,
        now: float,
        touched: set[str],
    ) -> int:
        """An answer or a notice: not held by caps either, and no conversation of its own."""
        intent = Intent(output=self.output, recipient=mobile, text=text, rule=rule, event=event)
        segments, _ = self.pipeline.estimate(self.output, text)
        outbox.add_job(conn, intent, event_id, now, segments=segments)
        touched.add(self.output)
        return 1

    def _exhausted(
        self, conn: Connection, incident: Incident, now: float, touched: set[str]
    ) -> int:
        """Nobody acknowledged after every step and repeat: a `system` event for the rules, in
        the same transaction as the timer that found it (so it is raised exactly once)."""
        self.pipeline.notes.warning("incident_unanswered", incident=incident.id)
        event = Event(
            kind=EventKind.SYSTEM,
            source=SOURCE,
            labels={"alertname": "PageUnanswered", "incident": str(incident.id)},
            text=f"Nobody acknowledged #{incident.id} {incident.title} after every step",
            data={"incident": incident.id, "policy": incident.policy, "rule": incident.rule},
            fingerprint=f"unanswered|{incident.id}",
            conversation=self.pipeline.conversations.default,
        )
        decisions = self.pipeline.decide(event, datetime.fromtimestamp(now, UTC))
        for decision in decisions:
            decision.prerender()
        if decisions:
            return self.pipeline.apply(conn, event, decisions, now, touched)
        # No rule takes it: it goes to the default conversation, as unrouted replies do.
        event_id = self.pipeline.add_event(conn, event)
        return self.pipeline.post_answer(conn, event, event.text, event_id, now, touched, SOURCE)

    def _event_of(self, conn: Connection, incident: Incident) -> Event:
        stored = outbox.get_event(conn, incident.event_id) if incident.event_id else None
        return stored or Event(EventKind.ALERT, SOURCE, labels={"alertname": incident.title})

    def _handoffs_ready(self) -> None:
        self._handoffs_set = True  # once the transaction that set them committed
