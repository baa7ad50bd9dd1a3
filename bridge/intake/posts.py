"""Posts into chat outputs: a rule's post, an answer in the event's thread, replies sent home."""

from __future__ import annotations

from bridge.events import Event, EventKind, Intent
from bridge.intake.deferred import DeferredLog
from bridge.outbox import jobs as outbox
from bridge.rules import Decision, Directory
from bridge.store import Connection
from bridge.text import clean


def post_rule(
    conn: Connection,
    decision: Decision,
    event_id: int,
    now: float,
    touched: set[str],
    notes: DeferredLog,
) -> int:
    """Queue the post a rule's decision calls for; returns the jobs queued."""
    assert decision.post is not None
    event = decision.event
    conversation = event.conversation
    output = decision.post.output or (conversation.output if conversation else None)
    if output is None:
        notes.warning("post_skipped", rule=decision.rule, reason="event has no conversation")
        return 0
    intent = Intent(
        output=output,
        recipient=conversation.channel if conversation and not decision.post.output else "",
        text=decision.render("post"),
        rule=decision.rule,
        event=event,
        conversation=conversation,
        payload={
            "rule": decision.rule,
            "event": event.to_json(),
            "thread": conversation.thread if conversation else "",
        },
    )
    outbox.add_job(conn, intent, event_id, now)
    touched.add(output)
    return 1


def post_answer(
    conn: Connection,
    event: Event,
    text: str,
    event_id: int | None,
    now: float,
    touched: set[str],
    notes: DeferredLog,
    rule: str = "answer",
) -> int:
    """Post a text into the event's own conversation (a chat thread); 0 if it has none."""
    conversation = event.conversation
    if conversation is None:
        notes.warning("answer_skipped", rule=rule, reason="event has no conversation")
        return 0
    intent = Intent(
        output=conversation.output,
        recipient=conversation.channel,
        text=text,
        rule=rule,
        event=event,
        conversation=conversation,
        payload={"thread": conversation.thread, "rule": rule, "event": event.to_json()},
    )
    outbox.add_job(conn, intent, event_id, now)
    touched.add(conversation.output)
    return 1


def fallback_text(event: Event, directory: Directory, report_deliveries: bool) -> str | None:
    """What goes home when no rule matched: a reply, or a report if configured; else None."""
    if event.conversation is None:
        return None
    who = directory.name_for(str(event.data.get("mobile", "")))
    if event.kind is EventKind.REPLY:
        return clean(f"{who}: {event.text}", keep_newlines=True)
    if event.kind is EventKind.DELIVERY and report_deliveries:
        status = event.data.get("status", "")
        code = event.data.get("carrier_code", "")
        return f"{who}: delivered" if status == "delivered" else f"{who}: {status}: {code}"
    return None
