"""Paging: on-call schedules, escalation policies, reply commands and quiet hours (pure parts)."""

from bridge.paging.config import (
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
from bridge.paging.localtime import to_instant
from bridge.paging.policy import NobodyOnCall, Page, Target, TimelineEntry, escalation_timeline
from bridge.paging.quiet import QuietHours
from bridge.paging.replies import Action, Command, normalize_reply, parse_reply
from bridge.paging.schedules import Handoff, next_handoffs, rotation_on_call, who_is_on_call

__all__ = [
    "Action",
    "Command",
    "Handoff",
    "HandoffTime",
    "NobodyOnCall",
    "OncallConfig",
    "OverrideConfig",
    "Page",
    "PolicyConfig",
    "QuietHours",
    "RotationConfig",
    "ScheduleConfig",
    "SilenceAuth",
    "SilencesConfig",
    "StepConfig",
    "Target",
    "TimelineEntry",
    "check_references",
    "escalation_timeline",
    "next_handoffs",
    "normalize_reply",
    "parse_reply",
    "rotation_on_call",
    "to_instant",
    "who_is_on_call",
]
