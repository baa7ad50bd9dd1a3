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
from bridge.paging.quiet import QuietHours

__all__ = [
    "HandoffTime",
    "OncallConfig",
    "OverrideConfig",
    "PolicyConfig",
    "QuietHours",
    "RotationConfig",
    "ScheduleConfig",
    "SilenceAuth",
    "SilencesConfig",
    "StepConfig",
    "check_references",
    "to_instant",
]
