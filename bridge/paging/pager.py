"""Paging wired into the engine: alerts open incidents, replies act on them, reports and timers
escalate them; every method runs inside the caller's Store.write() transaction."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial

import bridge.paging.actions as actions
import bridge.paging.chat as chat
import bridge.paging.escalation as escalation
import bridge.paging.hold as hold
import bridge.paging.incidents as incidents
import bridge.paging.silences as silences
import bridge.paging.timers as timers
from bridge.events import Conversation, Event, EventKind, Intent, Status
from bridge.intake import PAGING, Pipeline
from bridge.outbox import jobs as outbox
from bridge.paging.config import OncallConfig
from bridge.paging.escalation import Escalation, IncidentPage
from bridge.paging.incidents import Change, Incident, Transition
from bridge.paging.policy import escalation_timeline
from bridge.paging.replies import looks_like_command
from bridge.paging.silences import SilenceAnswer, Silencer, SilenceRequest
from bridge.rules import Decision, Directory, alert_summary
from bridge.sms import mask_number
from bridge.store import Connection

SOURCE = "paging"
TIMER_BATCH = 64  # timers fired per transaction: the write that holds them stays short
HELP = "Not a command. Reply with your page's code: 1a ack, 1c close, 1e escalate"
# The alert's summary in an incident's title (and so in its pages): enough to say what is
# wrong, short enough that a page stays about two segments.
TITLE_SUMMARY = 60


def _title(event: Event) -> str:
    name = event.labels.get("alertname") or event.text[:40] or event.kind.value
    said = alert_summary(event, TITLE_SUMMARY)
    return f"{name}: {said}" if said and event.labels.get("alertname") else name


def _notice(transition: Transition) -> str:
    """One short line for the others paged: `Alice acknowledged #3 DiskFull`."""
    incident = transition.incident
    who = transition.by or "someone"
    return f"{who} {transition.change.value} #{incident.id} {incident.title}"


class Pager:
    """The `Paging` the pipeline and reply intake call, and the timer task's work."""

    def __init__(
        self,
        pipeline: Pipeline,
        oncall: OncallConfig,
        directory: Directory,
        output: str,
        silencer: Silencer | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.oncall = oncall  # a reload makes a new Pager; incidents keep their stored timeline
        self.directory = directory
        self.output = output  # the SMS gateway, whose delivery reports drive the failover
        self.silencer = silencer  # makes `ack 2h` silences once the acknowledgement commits

    # --- alerts ------------------------------------------------------------------------------

    def alert(
        self,
        conn: Connection,
        decision: Decision,
        event_id: int,
        now: float,
        touched: set[str],
    ) -> int:
        assert decision.page is not None
        event, key = decision.event, decision.group_key()
        touched.add(PAGING)
        if event.status is Status.RESOLVED:
            resolved = incidents.resolve_group(conn, decision.rule, key, now)
            if resolved is not None and resolved.changed:
                self.pipeline.notes.info("incident_resolved", incident=resolved.incident.id)
                self._count(resolved, now)
            return 0
        name = decision.page.policy
        policy = self.oncall.policies.get(name)
        if policy is None:  # `check` refuses this; a reload that dropped it is logged
            self.pipeline.notes.error("page_skipped", rule=decision.rule, reason="unknown policy")
            return 0
        opened = incidents.open_incident(
            conn,
            decision.rule,
            key,
            name,
            policy,
            _title(event),
            event_id,
            event.conversation,
            now,
        )
        if opened.change is not Change.OPENED:
            return 0  # under way already: a new alert of the group restarts nothing
        self.pipeline.notes.info("incident_opened", incident=opened.incident.id, policy=name)
        self._count(opened, now)
        start = datetime.fromtimestamp(now, UTC)
        timeline = escalation_timeline(policy, self.directory, self.oncall.schedules, start)
        started = escalation.start_escalation(conn, opened.incident.id, timeline, now)
        return self._escalated(conn, started, now, touched)

    # --- replies and reports -------------------------------------------------------------------

    def reply(
        self,
        conn: Connection,
        source: str,
        mobile: str,
        text: str,
        now: float,
        touched: set[str],
    ) -> tuple[int, bool]:
        outcome = actions.apply_reply(conn, mobile, text, now, ack_max=self.oncall.ack_max)
        reply = Event(EventKind.REPLY, source, text=text, data={"mobile": mobile})
        if outcome.result is actions.Result.NOT_A_COMMAND:
            if looks_like_command(text) and actions.may_help(
                conn, mobile, now, self.oncall.help_per_day
            ):
                self.pipeline.notes.info("reply_help", mobile=mask_number(mobile))
                return self._sms(
                    conn, mobile, HELP, reply, None, "paging-help", now, touched
                ), False
            return 0, False
        missed = outcome.result in (actions.Result.NOTHING_OPEN, actions.Result.UNKNOWN_CODE)
        if missed and not actions.paged_lately(conn, mobile, now):
            return 0, False  # `ack` from someone never paged: an ordinary reply, forwarded
        touched.add(PAGING)
        if outcome.silences:
            jobs = self._silence(conn, outcome, mobile, reply, now, touched)
        else:
            jobs = self._sms(
                conn, mobile, outcome.answer, reply, None, "paging-answer", now, touched
            )
        for transition in outcome.transitions:
            self._count(transition, now)
            jobs += self._tell(conn, transition, mobile, now, touched)
        for step in outcome.escalations:
            jobs += self._escalated(conn, step, now, touched, replier=mobile)
        return jobs, True

    def report(
        self, conn: Connection, job_id: int, status: str, now: float, touched: set[str]
    ) -> int:
        jobs = 0
        # One job can carry several pages: a quiet-hours digest settles every page it held.
        while (step := escalation.delivery_report(conn, job_id, status, now)).incident:
            touched.add(PAGING)
            jobs += self._escalated(conn, step, now, touched)
        return jobs

    def _silence(
        self,
        conn: Connection,
        outcome: actions.Outcome,
        mobile: str,
        reply: Event,
        now: float,
        touched: set[str],
    ) -> int:
        """`ack 2h`: the silences go to Alertmanager after this transaction commits (never
        inside the write), and the answer waits for them, to say whether they were made."""
        config, silencer = self.oncall.alertmanager, self.silencer
        if config is None or silencer is None:
            answer = f"{outcome.answer}; no silence made: no Alertmanager is configured"
            return self._sms(conn, mobile, answer, reply, None, "paging-answer", now, touched)
        pending = SilenceAnswer(config, self.output, mobile, outcome.answer, reply, "paging-answer")
        acked_by = {t.incident.id: t.by for t in outcome.transitions}
        for silence in outcome.silences:
            incident = silence.incident
            labels = self._event_of(conn, incident).labels
            matchers = silences.group_matchers(incident.group_key, labels)
            if not matchers:  # an empty matcher set would silence every alert
                self.pipeline.notes.warning("silence_refused", incident=incident.id)
                pending.refused.append(f"#{incident.id}")
                continue
            who = acked_by.get(incident.id) or mask_number(mobile)
            duration = min(silence.duration, self.oncall.ack_max).total_seconds()
            pending.requests.append(
                SilenceRequest(
                    incident=incident.id,
                    title=incident.title,
                    matchers=matchers,
                    ends_at=now + duration,
                    comment=f"{who} acknowledged #{incident.id} {incident.title} by SMS",
                )
            )
        # Held like a metric update: made only if this transaction commits, after it does.
        self.pipeline.notes.count(partial(silencer.submit, pending))
        return 0

    # --- chat commands ---------------------------------------------------------------------

    def chat(
        self,
        conn: Connection,
        verb: str,
        number: int,
        who: str,
        conversation: Conversation | None,
        now: float,
        touched: set[str],
    ) -> tuple[int, str]:
        """`sms ack N`, `sms close N` (global incident numbers), `sms incidents`, `sms oncall`:
        the jobs queued (notices to those paged) and the answer for the thread."""
        if verb == "incidents":
            return 0, chat.incidents_text(conn)
        if verb == "oncall":
            return 0, chat.oncall_text(self.oncall.schedules, now)
        if incidents.get(conn, number) is None:
            return 0, f"no incident #{number}"
        if verb == "ack":
            transition = incidents.acknowledge(conn, number, who, now)
        else:
            transition = incidents.resolve(conn, number, now, by=who)
        incident = transition.incident
        if not transition.changed:
            return 0, f"#{incident.id} {incident.title} is already {incident.state.value}"
        touched.add(PAGING)
        self._count(transition, now)
        self.pipeline.notes.info("incident_chat_command", incident=incident.id, verb=verb)
        jobs = self._tell(conn, transition, "", now, touched, answered=conversation)
        return jobs, f"{transition.change.value} #{incident.id} {incident.title}"

    # --- timers --------------------------------------------------------------------------------

    def fire_due(self, conn: Connection, now: float, touched: set[str]) -> bool:
        """Fire due escalation timers (each with its effect, in this transaction); True when a
        full batch fired, so more may be due at once."""

        def effect(c: Connection, timer: timers.Timer) -> int:
            if timer.kind == hold.RELEASE_TIMER:
                return self._release(c, timer, now, touched)
            if timer.kind not in escalation.TIMER_KINDS:
                self.pipeline.notes.warning("timer_unknown", kind=timer.kind)
                return 0
            return self._escalated(c, escalation.on_timer(c, timer, now), now, touched)

        return len(timers.fire_due(conn, now, TIMER_BATCH, effect)) >= TIMER_BATCH

    # --- telling people ------------------------------------------------------------------------

    def _escalated(
        self,
        conn: Connection,
        step: Escalation,
        now: float,
        touched: set[str],
        replier: str = "",
    ) -> int:
        """Queue the pages a step decided; warn of empty schedules; raise `system` when over."""
        incident = step.incident
        if incident is None:
            return 0
        jobs = 0
        event = self._event_of(conn, incident)
        severity = event.labels.get("severity", "")
        released: list[float] = []
        for page in step.pages:
            release = hold.quiet_until(self.directory, self.oncall.critical, page, severity, now)
            if release is None:
                jobs += self._page(conn, incident, page, event, now, touched)
                continue
            released.append(
                hold.hold(conn, page, incident.title, release, incident.report_timeout, now)
            )
            self.pipeline.notes.count(self.pipeline.metrics.pages_held.inc)
            self.pipeline.notes.info(
                "page_held", incident=incident.id, step=page.step, to=mask_number(page.mobile)
            )
        if released and len(released) == len(step.pages) and severity not in self.oncall.critical:
            # Everyone this step woke is asleep: nobody else is woken for it either.
            escalation.postpone(conn, incident.id, max(released), now)
        for schedule in step.nobody_on_call:
            self.pipeline.notes.warning("nobody_on_call", schedule=schedule, incident=incident.id)
        if step.cause is not None:
            self.pipeline.notes.info("incident_escalated", incident=incident.id, cause=step.cause)
            self.pipeline.notes.count(self.pipeline.metrics.escalations.labels(step.cause).inc)
        if step.transition is not None:
            self._count(step.transition, now)
            if step.transition.change is Change.ESCALATED:
                jobs += self._tell(conn, step.transition, replier, now, touched)
        if step.exhausted:
            jobs += self._exhausted(conn, incident, now, touched)
        return jobs

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
        incident, text = transition.incident, _notice(transition)
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
