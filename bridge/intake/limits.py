"""Limits that keep a storm of alerts from becoming a storm of SMS: hourly caps, daily budget."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bridge.outbox import jobs as outbox
from bridge.rules import SmsAction
from bridge.store import Connection


@dataclass(frozen=True, slots=True)
class StormSettings:
    """Limits that keep a storm of alerts from becoming a storm of SMS."""

    held_summary_after: float = 300.0  # seconds a held message waits for its summary
    daily_segment_budget: int | None = None  # segments a day across every SMS output
    budget_zone: Any = UTC  # the day of the budget starts at midnight here


def held_reason(
    conn: Connection,
    settings: StormSettings,
    sms_outputs: Iterable[str],
    action: SmsAction,
    number: str,
    segments: int,
    now: float,
) -> str:
    """Why this SMS may not go now ('' when it may)."""
    # The last slot of the hour is kept for the summary of what was held back.
    if action.cap_per_hour and cap_reached(
        conn, action.output, number, max(action.cap_per_hour - 1, 1), now
    ):
        return "cap"
    if segments and over_budget(conn, settings, sms_outputs, segments, now):
        return "budget"
    return ""


def cap_reached(conn: Connection, output: str, number: str, slots: int, now: float) -> bool:
    """True when `number` got `slots` messages on `output` in the hour before `now`.

    The one cap check: rules, held-back summaries and their due times all use it.
    """
    return outbox.sends_since(conn, output, number, now - 3600) >= slots


def over_budget(
    conn: Connection,
    settings: StormSettings,
    sms_outputs: Iterable[str],
    segments: int,
    now: float,
) -> bool:
    """True when `segments` more would pass today's segment budget (one check for all)."""
    budget = settings.daily_segment_budget
    if budget is None:
        return False
    used = outbox.segments_since(conn, sms_outputs, day_start(now, settings.budget_zone))
    return used + segments > budget


def day_start(now: float, zone: Any) -> float:
    """Midnight of `now`'s day in `zone`, as a timestamp."""
    local = datetime.fromtimestamp(now, zone)
    return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
