"""Quiet hours in the paging path: pages held through a contact's quiet window on one durable
timer per number, released as one digest SMS when the window ends."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import bridge.paging.incidents as incidents
from bridge.paging.escalation import IncidentPage
from bridge.paging.incidents import State
from bridge.rules import Directory
from bridge.store import Connection, timers

RELEASE_TIMER = "quiet_release"  # key: the number whose held pages it releases


def quiet_until(
    directory: Directory, critical: Collection[str], mobile: str, severity: str, now: float
) -> float | None:
    """When the quiet hours of `mobile`'s contact end, if they hold a page of `severity` now."""
    # By number: a page carries the contact's display name, and a schedule's member too.
    quiet = next((c.quiet for c in directory.contacts.values() if c.number == mobile), None)
    at = datetime.fromtimestamp(now, UTC)
    if quiet is None or not quiet.contains(at) or quiet.lets_through(severity, critical):
        return None
    return quiet.window_end(at).timestamp()


def hold(
    conn: Connection,
    page: IncidentPage,
    title: str,
    release_at: float,
    report_timeout: float,
    now: float,
) -> float:
    """Hold `page` until its number's quiet window ends; returns when it is released.

    Every page held for a number rides on that number's one release timer, so the window ends
    with one SMS; the page's report timer waits for that SMS, so holding is not a failure."""
    existing = timers.get(conn, RELEASE_TIMER, page.mobile)
    held = list(existing.payload.get("pages", [])) if existing else []
    held.append({"page": page.page, "incident": page.incident, "code": page.code, "title": title})
    due = existing.due_at if existing else release_at
    timers.schedule(conn, RELEASE_TIMER, page.mobile, due, now, {"pages": held}, replace=True)
    timers.schedule(
        conn, incidents.REPORT_TIMER, str(page.page), due + report_timeout, now, replace=True
    )
    return due


def held_pages(timer: timers.Timer) -> list[Mapping[str, Any]]:
    """The pages a release timer holds, oldest first."""
    return list(timer.payload.get("pages", []))


def digest_text(conn: Connection, pages: Sequence[Mapping[str, Any]]) -> str:
    """`smsbridge held 3 pages overnight: #1 DiskFull (1a), …`: those settled since say so."""
    items = []
    for held in pages:
        incident = incidents.get(conn, int(held["incident"]))
        state = incident.state if incident is not None else State.RESOLVED
        # An open one carries its reply code; one settled since says so instead.
        note = f"{held['code']}a" if state is State.TRIGGERED else state.value
        items.append(f"#{held['incident']} {held['title']} ({note})")
    noun = "page" if len(pages) == 1 else "pages"
    return f"smsbridge held {len(pages)} {noun} overnight: {', '.join(items)}"
