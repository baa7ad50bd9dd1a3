"""Storm control's settings and the text of a "held back" summary."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from bridge import holding


@dataclass(frozen=True, slots=True)
class StormSettings:
    """Limits that keep a storm of alerts from becoming a storm of SMS."""

    held_summary_after: float = 300.0  # seconds a held message waits for its summary
    daily_segment_budget: int | None = None  # segments a day across every SMS output
    budget_zone: Any = UTC  # the day of the budget starts at midnight here


def expand(held: holding.HeldSummary) -> Iterable[str]:
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
    """
    total = sum(held.counts.values())
    ranked = sorted(held.counts.items(), key=lambda item: (-item[1], item[0]))
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
