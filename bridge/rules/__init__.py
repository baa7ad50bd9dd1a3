"""Routing rules: matchers, templates, rule and directory config, and the pure RuleSet."""

from bridge.rules.config import (
    CONVERSATION,
    ContactConfig,
    Contacts,
    Days,
    Directory,
    Groups,
    Hours,
    RuleConfig,
    Rules,
    Text,
    UnresolvedError,
    check_references,
)
from bridge.rules.matchers import ALL_DAYS, DAY_NAMES, Window, parse_days
from bridge.rules.ruleset import Decision, PageAction, Recipient, RuleError, RuleSet, SmsAction
from bridge.rules.templates import event_context, group_context, make_environment

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
    "PageAction",
    "Recipient",
    "RuleConfig",
    "RuleError",
    "RuleSet",
    "Rules",
    "SmsAction",
    "Text",
    "UnresolvedError",
    "Window",
    "check_references",
    "event_context",
    "group_context",
    "make_environment",
    "parse_days",
]
