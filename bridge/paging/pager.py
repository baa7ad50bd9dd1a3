"""Paging wired into the engine: alerts open incidents, replies act on them, reports and timers
escalate them; every method runs inside the caller's Store.write() transaction."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial

import bridge.paging.actions as actions
import bridge.paging.chat as chat
import bridge.paging.escalation as escalation
import bridge.paging.handoffs as handoffs
import bridge.paging.hold as hold
import bridge.paging.incidents as incidents
import bridge.paging.silences as silences
from bridge.config.oncall import OncallConfig
from bridge.events import Conversation, Event, EventKind, Status
from bridge.intake import PAGING, Pipeline
from bridge.paging.escalation import Escalation
from bridge.paging.incidents import Change
from bridge.paging.policy import escalation_timeline
from bridge.paging.replies import looks_like_command
from bridge.paging.silences import SilenceAnswer, Silencer, SilenceRequest
from bridge.paging.telling import PENDING_JOB_PAGES, PENDING_PAGE, Teller
from bridge.rules import Decision, Directory, alert_summary
from bridge.sms import mask_number
from bridge.store import Connection, timers

TIMER_BATCH = 64  # timers fired per transaction: the write that holds them stays short
HELP = "Not a command. Reply with your page's code: 1a ack, 1c close, 1e escalate"
# The alert's summary in an incident's title (and so in its pages): enough to say what is
# wrong, short enough that a page stays about two segments.
TITLE_SUMMARY = 60


def _title(event: Event) -> str:
    name = event.labels.get("alertname") or event.text[:40] or event.kind.value
    said = alert_summary(event, TITLE_SUMMARY)
    return f"{name}: {said}" if said and event.labels.get("alertname") else name


class Pager(Teller):
    """The `Paging` the pipeline and reply intake call, and the timer task's work."""

    def __init__(
        self,
        pipeline: Pipeline,
        oncall: OncallConfig,
        directory: Directory,
        output: str,
        silencer: Silencer | None = None,
    ) -> None:
        super().__init__(pipeline, oncall, directory, output)
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
        # Its thread: the chat it came from, else the team's default conversation.
        thread = event.conversation or self.pipeline.conversations.default
        opened = incidents.open_incident(
            conn, decision.rule, key, name, policy, _title(event), event_id, thread, now
        )
        if opened.change is not Change.OPENED:
            return 0  # under way already: a new alert of the group restarts nothing
        self.pipeline.notes.info("incident_opened", incident=opened.incident.id, policy=name)
        self._count(opened, now)
        start = datetime.fromtimestamp(now, UTC)
        timeline = escalation_timeline(policy, self.directory, self.oncall.schedules, start)
        started = escalation.start_escalation(conn, opened.incident.id, timeline, now)
        jobs = self._escalated(conn, started, now, touched)
        return jobs + self._announce(conn, opened.incident, started, event_id, now, touched)

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
        if status == "failed":
            self._warn_undelivered(conn, PENDING_JOB_PAGES, job_id, "failed")
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
        # The timer makes it durable; the silences are made after this transaction commits.
        pending.key = f"{mobile}|{now:.6f}"
        timers.schedule(
            conn,
            silences.PENDING_TIMER,
            pending.key,
            now + silences.RETRY_AFTER,
            now,
            pending.payload(),
        )
        self.pipeline.notes.count(partial(silencer.submit, pending))
        return 0

    def _resume_silence(
        self, conn: Connection, timer: timers.Timer, now: float, touched: set[str]
    ) -> int:
        """An `ack 2h` whose silences were never made (the daemon stopped in between): make
        them now, keeping the timer until the answer is queued."""
        config, silencer = self.oncall.alertmanager, self.silencer
        found = timer.payload
        if config is None or silencer is None:
            answer = f"{found['answer']}; no silence made: no Alertmanager is configured"
            reply = Event.from_json(found["event"])
            mobile = str(found["mobile"])
            return self._sms(conn, mobile, answer, reply, None, found["rule"], now, touched)
        pending = SilenceAnswer.from_timer(config, timer)
        timers.schedule(
            conn, silences.PENDING_TIMER, timer.key, now + silences.RETRY_AFTER, now, found
        )
        self.pipeline.notes.info("silence_resumed", requests=len(pending.requests))
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

        if not self._handoffs_set:
            handoffs.ensure_timers(conn, self.oncall.schedules, now)
            self.pipeline.notes.count(self._handoffs_ready)

        def effect(c: Connection, timer: timers.Timer) -> int:
            if timer.kind == handoffs.HANDOFF_TIMER:
                return self._handoff(c, timer, now, touched)
            if timer.kind == incidents.REPORT_TIMER:
                self._warn_undelivered(c, PENDING_PAGE, int(timer.key), "no report")
            if timer.kind == hold.RELEASE_TIMER:
                return self._release(c, timer, now, touched)
            if timer.kind == silences.PENDING_TIMER:
                return self._resume_silence(c, timer, now, touched)
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
            release = hold.quiet_until(
                self.directory, self.oncall.critical, page.mobile, severity, now
            )
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
