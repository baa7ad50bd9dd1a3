"""What chat commands show of paging: the open incidents, and who is on call."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import bridge.paging.incidents as incidents
from bridge.config.oncall import ScheduleConfig
from bridge.paging.incidents import State
from bridge.paging.schedules import next_handoffs, who_is_on_call
from bridge.store import Connection

_TIME = "%Y-%m-%d %H:%M %Z"
NOBODY = "nobody"


def incidents_text(conn: Connection) -> str:
    """One line per open incident, oldest first: `#3 DiskFull: acknowledged by Bob`."""
    found = incidents.open_incidents(conn)
    if not found:
        return "no open incidents"
    lines = []
    for incident in found:
        opened = datetime.fromtimestamp(incident.opened_at, UTC).strftime(_TIME)
        state = incident.state.value
        if incident.state is State.ACKNOWLEDGED and incident.acked_by:
            state += f" by {incident.acked_by}"
        lines.append(f"#{incident.id} {incident.title}: {state} (opened {opened})")
    return "\n".join(lines)


def oncall_text(schedules: Mapping[str, ScheduleConfig], now: float) -> str:
    """Who is on call in each schedule now, and the next handoff (in the schedule's zone)."""
    if not schedules:
        return "no on-call schedules are defined"
    at = datetime.fromtimestamp(now, UTC)
    lines = []
    for name in sorted(schedules):
        schedule = schedules[name]
        line = f"{name}: {', '.join(who_is_on_call(schedule, at)) or NOBODY}"
        for handoff in next_handoffs(schedule, at, 1):
            when = handoff.at.astimezone(schedule.timezone).strftime(_TIME)
            line += f"; next {', '.join(handoff.after) or NOBODY} from {when}"
        lines.append(line)
    return "\n".join(lines)
