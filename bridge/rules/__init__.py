"""Routing rules: matchers, templates, rule and directory config, and the pure RuleSet."""

from bridge.rules.config import (
    CONVERSATION,
    ContactConfig,
    Contacts,
    Days,
    Directory,
    Groups,
    RuleConfig,
    Rules,
    Text,
    UnresolvedError,
    check_references,
)
from bridge.rules.localtime import as_utc, next_clock_change, to_instant, wall_time
from bridge.rules.matchers import ALL_DAYS, DAY_NAMES, Hours, Window, parse_days
from bridge.rules.quiet import Listed, QuietHours, as_list
from bridge.rules.ruleset import Decision, PageAction, Recipient, RuleError, RuleSet, SmsAction
from bridge.rules.templates import alert_summary, event_context, group_context, make_environment

__all__ = [
    "ALL_DAYS",
    "CONVERSATION",
    "DAY_NAMES",
    "ContactConfig",
    "Contacts",
    "Days",
    "Decision",
    "Directory",
    "Groups",
    "Hours",
    "Listed",
    "PageAction",
    "QuietHours",
    "Recipient",
    "RuleConfig",
    "RuleError",
    "RuleSet",
    "Rules",
    "SmsAction",
    "Text",
    "UnresolvedError",
    "Window",
    "alert_summary",
    "as_list",
    "as_utc",
    "check_references",
    "event_context",
    "group_context",
    "make_environment",
    "next_clock_change",
    "parse_days",
    "to_instant",
    "wall_time",
]
