"""Paging: on-call schedules, escalation policies, reply commands, quiet hours; incidents and
their escalation on durable timers (functions that run inside a Store.write transaction)."""

from bridge.config.oncall import (
    HandoffTime,
    OncallConfig,
    OverrideConfig,
    PolicyConfig,
    RotationConfig,
    ScheduleConfig,
    SilenceAuth,
    SilencesConfig,
    StepConfig,
    check_references,
)
from bridge.paging.actions import Outcome, Result, Silence, apply_reply, may_help
from bridge.paging.escalation import (
    TIMER_KINDS,
    Cause,
    Escalation,
    IncidentPage,
    attach_job,
    delivery_report,
    escalate,
    on_timer,
    start_escalation,
)
from bridge.paging.handoffs import HANDOFF_TIMER, Unreachable, unreachable
from bridge.paging.hold import quiet_until
from bridge.paging.incidents import (
    Change,
    Incident,
    Paged,
    State,
    Transition,
    acknowledge,
    find_open,
    open_counts,
    open_incident,
    open_incidents,
    resolve,
    resolve_group,
)
from bridge.paging.incidents import get as get_incident
from bridge.paging.pager import Pager
from bridge.paging.policy import NobodyOnCall, Page, Target, TimelineEntry, escalation_timeline
from bridge.paging.replies import (
    Action,
    Command,
    looks_like_command,
    normalize_reply,
    parse_reply,
)
from bridge.paging.schedules import Handoff, next_handoffs, rotation_on_call, who_is_on_call
from bridge.paging.silences import Silencer
from bridge.rules import QuietHours, to_instant

__all__ = [
    "HANDOFF_TIMER",
    "TIMER_KINDS",
    "Action",
    "Cause",
    "Change",
    "Command",
    "Escalation",
    "Handoff",
    "HandoffTime",
    "Incident",
    "IncidentPage",
    "NobodyOnCall",
    "OncallConfig",
    "Outcome",
    "OverrideConfig",
    "Page",
    "Paged",
    "Pager",
    "PolicyConfig",
    "QuietHours",
    "Result",
    "RotationConfig",
    "ScheduleConfig",
    "Silence",
    "SilenceAuth",
    "Silencer",
    "SilencesConfig",
    "State",
    "StepConfig",
    "Target",
    "TimelineEntry",
    "Transition",
    "Unreachable",
    "acknowledge",
    "apply_reply",
    "attach_job",
    "check_references",
    "delivery_report",
    "escalate",
    "escalation_timeline",
    "find_open",
    "get_incident",
    "looks_like_command",
    "may_help",
    "next_handoffs",
    "normalize_reply",
    "on_timer",
    "open_counts",
    "open_incident",
    "open_incidents",
    "parse_reply",
    "quiet_until",
    "resolve",
    "resolve_group",
    "rotation_on_call",
    "start_escalation",
    "to_instant",
    "unreachable",
    "who_is_on_call",
]
