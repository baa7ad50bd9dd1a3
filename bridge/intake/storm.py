"""Storm control: flushing grouped alerts, and "held back" summaries."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import bridge.intake.holding as holding
import bridge.intake.limits as limits
from bridge.events import Event, EventKind, Intent
from bridge.intake.pipeline import Pipeline
from bridge.outbox import jobs as outbox
from bridge.sms import mask_number
from bridge.store import Connection
from bridge.text import clean


def _expand(held: holding.HeldSummary) -> Iterable[str]:
    """Each held alert name once per alert, to hold them again."""
    for name, count in held.counts.items():
        yield from [name] * count


# The summary stands in for everything held back this hour and spends the hour's reserved slot,
# so it may use the gateway's whole content limit (1,000 characters) to name every alert.
SUMMARY_MAX_CHARS = 1000


def summary_text(held: holding.HeldSummary, max_chars: int = SUMMARY_MAX_CHARS) -> str:
    """'smsbridge held back 37 alerts (cap): HighLatency×20, DiskFull×17' — most frequent first.

    Every name is shown: in this readable form, or when shorter in a compact one that lists names
    sharing a count once under it ('×15: DiskFull, CpuHigh; ×3: Backup'). Only a summary too long
    for `max_chars` even then ends '(+N more names)'; its total still counts every alert.
    Names are alert labels, so they are cleaned like any rendered SMS text.
    """
    counts: dict[str, int] = {}
    for name, count in held.counts.items():
        label = clean(name).strip() or "unnamed"
        counts[label] = counts.get(label, 0) + count
    total = sum(counts.values())
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    head = f"smsbridge held back {total} alerts ({'/'.join(held.reasons)}): "
    readable = head + ", ".join(f"{name}×{count}" if count > 1 else name for name, count in ranked)
    by_count: dict[int, list[str]] = {}
    for name, count in ranked:
        by_count.setdefault(count, []).append(name)
    compact = head + "; ".join(f"×{count}: {', '.join(names)}" for count, names in by_count.items())
    best = min(readable, compact, key=len)
    if len(best) <= max_chars:
        return best
    # Too many names even so: show the most frequent that fit, count the others.
    for shown in range(len(ranked) - 1, -1, -1):
        kept: dict[int, list[str]] = {}
        for name, count in ranked[:shown]:
            kept.setdefault(count, []).append(name)
        listed = "; ".join(f"×{count}: {', '.join(names)}" for count, names in kept.items())
        text = f"{head}{listed} (+{len(ranked) - shown} more names)"
        if len(text) <= max_chars:
            return text
    return head.rstrip(": ")[:max_chars]


async def flush_due(pipeline: Pipeline, fence: Callable[[Connection], None] | None = None) -> None:
    """Send the summary of every group whose wait is over, and due held-back summaries.

    `fence` runs first in the transaction (the processor leader's lease check)."""
    now = pipeline.clock()
    touched: set[str] = set()

    def work(conn: Connection) -> None:
        if fence is not None:
            fence(conn)
        for group in holding.take_due_groups(conn, now):
            _flush_group(pipeline, conn, group, now, touched)
        for output, number in holding.held_recipients(
            conn, now - pipeline.storm.held_summary_after
        ):
            _flush_held(pipeline, conn, output, number, now, touched)

    await pipeline.store.write(work)
    pipeline.flush_log(pipeline.log)
    pipeline.wake(touched)


def _flush_group(
    pipeline: Pipeline,
    conn: Connection,
    group: holding.DueGroup,
    now: float,
    touched: set[str],
) -> None:
    events = [e for e in (outbox.get_event(conn, i) for i in group.event_ids) if e]
    action = pipeline.rules.sms_action(group.rule)
    if action is None or not events:
        pipeline.notes.warning("group_dropped_rule_gone", rule=group.rule, alerts=len(events))
        return
    text = pipeline.rules.render_group(group.rule, events)
    pipeline.queue_sms(
        conn,
        group.rule,
        action,
        group.recipient,
        text,
        events,
        group.event_ids[-1],
        now,
        touched,
    )


def _flush_held(
    pipeline: Pipeline,
    conn: Connection,
    output: str,
    number: str,
    now: float,
    touched: set[str],
) -> None:
    cap = pipeline.rules.smallest_cap(output)
    if cap and limits.cap_reached(conn, output, number, cap, now):
        return  # no slot this hour; try again when one frees up
    held = holding.take_held(conn, output, number)
    if held is None:
        return
    text = summary_text(held)
    segments = pipeline.sms_outputs[output](output, text) if output in pipeline.sms_outputs else 0
    if "budget" in held.reasons and limits.over_budget(
        conn, pipeline.storm, pipeline.sms_outputs, segments, now
    ):
        # Still no budget: keep holding; the log and metric already counted them.
        holding.hold(conn, output, number, "held", list(_expand(held)), "budget", now)
        return
    event = Event(
        kind=EventKind.SYSTEM, source="smsbridge", text=text, labels={"alertname": "HeldBack"}
    )
    intent = Intent(
        output=output,
        recipient=number,
        text=text,
        rule="held-summary",
        event=event,
        payload={"held": sum(held.counts.values())},
    )
    outbox.add_job(conn, intent, None, now, segments=segments)
    touched.add(output)
    pipeline.notes.warning(
        "sms_held_summary", to=mask_number(number), alerts=sum(held.counts.values())
    )


def next_due(pipeline: Pipeline, conn: Connection) -> float | None:
    """When flush_due next has work: the earliest group flush or held summary."""
    times = [holding.next_group_flush(conn)]
    now = pipeline.clock()
    rows = conn.execute(
        "SELECT output, recipient, min(created_at) AS t FROM held GROUP BY output, recipient"
    ).fetchall()
    for row in rows:
        output, number = row["output"], row["recipient"]
        summary_due = float(row["t"]) + pipeline.storm.held_summary_after
        # Fix: a summary with no slot left this hour is due when the hour's oldest send
        # leaves the window, not at once: that made the storm loop flush every 50 ms until
        # then. (_flush_held skips it until a slot frees, with the same test.)
        cap = pipeline.rules.smallest_cap(output)
        if cap and limits.cap_reached(conn, output, number, cap, now):
            oldest = outbox.first_send_since(conn, output, number, now - 3600)
            if oldest is not None:
                summary_due = max(summary_due, oldest + 3600)
        times.append(summary_due)
    due = [t for t in times if t is not None]
    return min(due) if due else None
