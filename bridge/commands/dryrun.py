"""The dry run behind `smsbridge route` and the console's rules page: what an event would send,
to whom, and the escalation timeline, from the config and the outbox as it is. Sends nothing."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from bridge.config.models import Config
from bridge.events import Event, Status
from bridge.outbox import jobs as outbox
from bridge.paging import NobodyOnCall, escalation_timeline, quiet_until
from bridge.rules import Decision, Directory, RuleSet
from bridge.sms import mask_number, segment_count
from bridge.store import Connection


class DryRunSettings(Protocol):
    """What a dry run reads of a loaded config (the daemon's Settings has it)."""

    @property
    def config(self) -> Config: ...
    @property
    def rules(self) -> RuleSet: ...
    @property
    def signature(self) -> str: ...
    @property
    def timezone(self) -> ZoneInfo: ...


def report(
    settings: DryRunSettings, conn: Connection | None, event: Event, at: datetime, now: float
) -> dict[str, Any]:
    """The whole dry run of `event` as if at `at`: the event, each rule's verdict, and what each
    decision would send; `conn` is a read-only outbox (None when there is none yet)."""
    decisions = settings.rules.evaluate(event, at)
    return {
        "event": {
            "kind": event.kind.value,
            "source": event.source,
            "status": event.status.value,
            "labels": dict(event.labels),
        },
        "rules": _rule_lines(settings.rules.explain(event, at), decisions),
        "decisions": [_describe(d, settings, conn, now, at) for d in decisions],
    }


def _recipient_state(conn: Connection | None, decision: Decision, number: str, now: float) -> str:
    action = decision.sms
    assert action is not None
    event = decision.event
    window = action.repeat_interval.total_seconds()
    if conn is not None and window and event.fingerprint:
        key = f"repeat|{decision.rule}|{event.fingerprint}|{number}|{event.status.value}"
        row = conn.execute("SELECT expires_at FROM dedupe WHERE key = ?", (key,)).fetchone()
        if row is not None and row["expires_at"] > now:
            return f"suppressed: sent within repeat_interval ({action.repeat_interval})"
    if action.group_wait.total_seconds():
        return f"grouped: joins a summary sent {action.group_wait} after the group's first alert"
    if conn is not None and action.cap_per_hour:
        recent = outbox.sends_since(conn, action.output, number, now - 3600)
        if recent >= max(action.cap_per_hour - 1, 1):
            return f"held back: cap {action.cap_per_hour}/h reached ({recent} in the last hour)"
    return (
        "would send" if conn is not None else "would send (no outbox yet: nothing to repeat or cap)"
    )


def _pending_members(conn: Connection | None, decision: Decision) -> list[Event]:
    """The alerts already waiting in the event's group (any recipient), oldest first."""
    if conn is None:
        return []
    rows = conn.execute(
        """SELECT DISTINCT event_id FROM group_members WHERE rule = ? AND group_key = ?
           ORDER BY event_id""",
        (decision.rule, decision.group_key()),
    ).fetchall()
    return [e for e in (outbox.get_event(conn, row["event_id"]) for row in rows) if e]


def _paging(decision: Decision, settings: DryRunSettings, at: datetime) -> dict[str, Any] | None:
    """The incident a paging rule would open and who it pages when, if nobody acknowledges."""
    if decision.page is None:
        return None
    name = decision.page.policy
    item: dict[str, Any] = {"policy": name, "incident": decision.group_key()}
    oncall = settings.config.oncall
    policy = oncall.policies.get(name) if oncall is not None else None
    if decision.event.status is Status.RESOLVED or policy is None or oncall is None:
        # `check` refuses an unknown policy; a resolution only closes the incident.
        item["resolves"] = decision.event.status is Status.RESOLVED
        item["timeline"] = []
        return item
    directory = Directory(settings.config.contacts, settings.config.groups)
    severity = decision.event.labels.get("severity", "")
    critical = severity in oncall.critical
    timeline: list[dict[str, Any]] = []
    waited = timedelta()  # how far quiet hours have pushed the rest of the timeline
    for entry in escalation_timeline(policy, directory, oncall.schedules, at):
        when = at + entry.offset + waited
        line: dict[str, Any] = {
            "offset_seconds": (entry.offset + waited).total_seconds(),
            "at": when.astimezone(settings.timezone),
            "step": entry.step + 1,
            "pass": entry.pass_index + 1,
        }
        if isinstance(entry, NobodyOnCall):
            line["nobody_on_call"] = entry.schedule
            timeline.append(line)
            continue
        line["targets"] = []
        releases: list[float] = []
        for t in entry.targets:
            target: dict[str, Any] = {
                "name": t.name,
                "number": mask_number(t.number),
                "via": t.via,
            }
            release = quiet_until(directory, oncall.critical, t.number, severity, when.timestamp())
            if release is not None:
                releases.append(release)
                target["held_until"] = datetime.fromtimestamp(release, settings.timezone)
            line["targets"].append(target)
        if releases and len(releases) == len(entry.targets) and not critical:
            # As the pager does: everyone this step woke is asleep, so nobody else is woken
            # for it; the rest of the timeline waits for the latest of them.
            line["postpones_seconds"] = max(releases) - when.timestamp()
            waited += timedelta(seconds=line["postpones_seconds"])
        timeline.append(line)
    item["steps"] = len(policy.steps)
    item["repeat"] = policy.repeat
    timeout = policy.ack_timeout
    item["ack_timeout_seconds"] = timeout.total_seconds() if timeout is not None else None
    item["pages"] = sum(len(line.get("targets", ())) for line in timeline)
    item["resolves"] = False
    item["timeline"] = timeline
    return item


def _describe(
    decision: Decision,
    settings: DryRunSettings,
    conn: Connection | None,
    now: float,
    at: datetime,
) -> dict[str, Any]:
    item: dict[str, Any] = {"rule": decision.rule}
    price = settings.config.gateway.segment_price if settings.config.gateway else Decimal("0.10")
    if decision.sms is not None:
        sms = decision.sms
        grouped = sms.group_wait > timedelta(0)
        if grouped:
            # What the group's flush sends: the summary of the alerts waiting and this one.
            members = [*_pending_members(conn, decision), decision.event]
            rendered = settings.rules.render_group_result(decision.rule, members, at)
        else:
            rendered = decision.rendered("sms")
        segments = segment_count(rendered.text, settings.signature)
        item["sms"] = {
            "output": sms.output,
            "grouped": grouped,
            "text": rendered.text,
            "template_error": rendered.error,
            "segments": segments,
            "cost_per_number": str(price * segments),
            "wanted": sms.wants(decision.event),
            "recipients": [
                {
                    "name": r.name,
                    "number": mask_number(r.number),
                    "outcome": _recipient_state(conn, decision, r.number, now),
                }
                for r in sms.recipients_for(decision.event)
            ],
        }
    if decision.post is not None:
        target = decision.post.output or "the event's conversation"
        item["post"] = {"to": target, "text": decision.render("post")}
    paging = _paging(decision, settings, at)
    if paging is not None:
        item["page"] = paging
    return item


def _rule_lines(
    explained: list[tuple[str, str | None]], decisions: list[Decision]
) -> list[dict[str, Any]]:
    """Each rule, whether it matches, and for one that matches but is never reached, which
    rule stops the evaluation before it (the last decision: it has no `continue: true`)."""
    decided = {decision.rule for decision in decisions}
    stopper = decisions[-1].rule if decisions else None
    rules: list[dict[str, Any]] = []
    for name, why in explained:
        shadowed = why is None and name not in decided
        rules.append(
            {
                "rule": name,
                "matched": why is None,
                "why_not": why,
                "shadowed_by": stopper if shadowed else None,
            }
        )
    return rules
