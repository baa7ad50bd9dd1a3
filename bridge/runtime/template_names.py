"""Warnings for template variables that no event provides: a typo renders empty, not an error."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from datetime import UTC, datetime

from jinja2 import meta

from bridge.config import Issue, issue_at
from bridge.config.loader import Document
from bridge.events import Event, EventKind
from bridge.rules import RuleConfig, event_context, group_context, make_environment

_ENV = make_environment()
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
# Taken from the functions that build the contexts, so a variable added there is known here.
_EVENT_NAMES = frozenset(event_context(Event(EventKind.ALERT, ""), _EPOCH)) | set(_ENV.globals)
_GROUP_NAMES = frozenset(group_context([], (), _EPOCH)) | set(_ENV.globals)

# (action, template key, the variables it is rendered with)
_TEMPLATES = (
    ("sms", "template", _EVENT_NAMES),
    ("sms", "group_template", _GROUP_NAMES),
    ("post", "template", _EVENT_NAMES),
)


def _message(name: str, known: frozenset[str]) -> str:
    holder = "no event provides" if known is _EVENT_NAMES else "a group summary has no"
    visible = sorted(known - set(_ENV.globals))
    close = difflib.get_close_matches(name, visible, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    where = (
        "; a payload's own fields are under data, e.g. data.annotations" if "data" in known else ""
    )
    return f"{holder} '{name}', so it renders empty{hint} (variables: {', '.join(visible)}{where})"


def template_warnings(document: Document, rules: Sequence[RuleConfig]) -> tuple[Issue, ...]:
    """A warning for each name a rule's template reads that its context never holds."""
    warnings: list[Issue] = []
    for index, rule in enumerate(rules):
        for action, key, known in _TEMPLATES:
            options = getattr(rule, action)
            if options is None or key not in options.model_fields_set:
                continue  # the defaults are known to be right
            source = getattr(options, key)
            for name in sorted(meta.find_undeclared_variables(_ENV.parse(source)) - known):
                path = ("rules", index, action, key)
                warnings.append(issue_at(document, path, _message(name, known)))
    return tuple(warnings)
