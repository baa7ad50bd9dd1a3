"""The `contacts`, `groups` and `rules` config sections, and checks of their cross-references."""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainSerializer,
    PlainValidator,
    field_validator,
    model_validator,
)

from bridge.config import ConfigModel, ConfigPath, Duration, TimeZoneName, expected
from bridge.events import EventKind
from bridge.rules.matchers import (
    ALL_DAYS,
    DAY_NAMES,
    Hours,
    Matcher,
    parse_days,
    parse_matcher,
)
from bridge.rules.quiet import QuietHours
from bridge.rules.templates import (
    DEFAULT_GROUP_TEMPLATE,
    DEFAULT_POST_TEMPLATE,
    DEFAULT_TEMPLATE,
    check_template,
)
from bridge.sms import InvalidNumberError, mask_number, normalize_number

CONVERSATION = "conversation"  # `post.to` value: the conversation the event came from
MAX_SEGMENTS = 10  # the gateway takes 1000 characters; past 10 parts nobody reads an SMS
_LOOKS_LIKE_NUMBER = re.compile(r"[+\d][\d\s\-()]*")
_LISTED = 12  # defined names listed in an "unknown name" message


def _text(value: Any) -> Any:
    # YAML reads an unquoted 15102110086 or `code: 500` as an integer; both are meant as text.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


Text = Annotated[str, BeforeValidator(_text)]
TemplateText = Annotated[str, AfterValidator(check_template)]


def _one_or_more(value: Any) -> list[Any]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(item, str) and item for item in items):
        raise expected("a name or a list of names")
    return items


def parse_kinds(value: Any) -> frozenset[EventKind]:
    """Read one event kind or a list of them."""
    allowed = [kind.value for kind in EventKind]
    kinds: set[EventKind] = set()
    for item in _one_or_more(value):
        if item not in allowed:
            close = difflib.get_close_matches(item, allowed, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ValueError(f"unknown kind '{item}'{hint} (allowed: {', '.join(allowed)})")
        kinds.add(EventKind(item))
    return frozenset(kinds)


def parse_names(value: Any) -> str | tuple[str, ...]:
    """Read one name or a list of names (kept in its shape, so errors can point at an item)."""
    items = _one_or_more(value)
    return items[0] if isinstance(value, str) else tuple(items)


def _matcher(value: Any) -> Matcher:
    if isinstance(value, Matcher):
        return value
    if not isinstance(value, str):
        raise expected("a matcher like 'team!=\"db\"'")
    return parse_matcher(value)


# Each dumps back to the form it is written in, so `model_dump` gives loadable config.
Days = Annotated[
    frozenset[int],
    PlainValidator(parse_days),
    PlainSerializer(lambda days: [DAY_NAMES[day] for day in sorted(days)]),
]
Kinds = Annotated[
    frozenset[EventKind],
    PlainValidator(parse_kinds),
    PlainSerializer(lambda kinds: sorted(kind.value for kind in kinds)),
]
Names = Annotated[
    str | tuple[str, ...],
    PlainValidator(parse_names),
    PlainSerializer(lambda names: names if isinstance(names, str) else list(names)),
]
MatcherText = Annotated[Matcher, PlainValidator(_matcher), PlainSerializer(str)]


class WindowConfig(ConfigModel):
    """When a rule applies: weekdays and hours, in a time zone (default: the rules' zone)."""

    days: Days = ALL_DAYS
    hours: Hours | None = None
    timezone: TimeZoneName | None = None


class MatchConfig(ConfigModel):
    """Which events a rule takes; every condition given must hold."""

    kind: Kinds | None = None  # None: any kind
    source: Names | None = None  # None: any input
    status: Literal["firing", "resolved", "any"] = "any"
    labels: dict[str, Text] = Field(default_factory=dict)
    matchers: list[MatcherText] = Field(default_factory=list)
    when: WindowConfig | None = None

    def sources(self) -> frozenset[str] | None:
        """The input names taken, or None for any."""
        if self.source is None:
            return None
        return frozenset([self.source] if isinstance(self.source, str) else self.source)


class SmsConfig(ConfigModel):
    """Send an SMS through an output to contacts, groups and numbers."""

    output: str = "sms"
    to: Annotated[list[Text], Field(min_length=1)]
    template: TemplateText = DEFAULT_TEMPLATE
    group_template: TemplateText = DEFAULT_GROUP_TEMPLATE
    max_segments: Annotated[int, Field(ge=1, le=MAX_SEGMENTS)] = 3
    group_wait: Duration = timedelta()
    group_by: list[str] = Field(default_factory=lambda: ["alertname"])
    repeat_interval: Duration = timedelta(hours=4)
    send_resolved: bool = True
    cap_per_hour: Annotated[int, Field(ge=1)] | None = None
    retry_ambiguous: bool = True


class PostConfig(ConfigModel):
    """Post a message to another output, or back to the event's own conversation."""

    to: str
    template: TemplateText = DEFAULT_POST_TEMPLATE


class PageConfig(ConfigModel):
    """Page people through a policy of `oncall.policies`: one incident per alert group."""

    policy: Annotated[str, Field(min_length=1)]
    group_by: list[str] = Field(default_factory=lambda: ["alertname"])  # one incident per group


class RuleConfig(ConfigModel):
    """One routing rule: a match and at least one action."""

    name: Annotated[str, Field(min_length=1)]
    match: MatchConfig = MatchConfig()
    sms: SmsConfig | None = None
    post: PostConfig | None = None
    page: PageConfig | None = None
    continue_: bool = Field(False, alias="continue")

    @model_validator(mode="after")
    def _has_action(self) -> Self:
        if self.sms is None and self.post is None and self.page is None:
            raise ValueError("a rule needs an action: sms, post or page (or several)")
        return self


class ContactConfig(ConfigModel):
    """A person: a number, and a name for messages and logs."""

    number: Text
    name: str | None = None
    quiet: QuietHours | None = None  # hours in which pages that may wait are held

    @model_validator(mode="before")
    @classmethod
    def _bare_number(cls, value: Any) -> Any:
        return {"number": _text(value)} if isinstance(value, str | int) else value

    @field_validator("number")
    @classmethod
    def _normalised(cls, value: str) -> str:
        return normalize_number(value)


Contacts = dict[str, ContactConfig]
Groups = dict[str, list[Text]]
Rules = list[RuleConfig]


class RulesConfig(ConfigModel):
    """The three sections together, for code and tests that want them as one model."""

    contacts: Contacts = Field(default_factory=dict)
    groups: Groups = Field(default_factory=dict)
    rules: Rules = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Recipient:
    """One number to send to; `name` is the contact's name, or the masked number."""

    number: str
    name: str


class UnresolvedError(ValueError):
    """A `to` or group entry that is no contact, no group and no valid number."""


class Directory:
    """Contacts and groups: turns `to` entries into numbers."""

    def __init__(
        self, contacts: Mapping[str, ContactConfig], groups: Mapping[str, Sequence[str]]
    ) -> None:
        self.contacts = contacts
        self.groups = groups

    def name_for(self, number: str) -> str:
        """The contact's name for a number, or the number masked."""
        for name, contact in self.contacts.items():
            if contact.number == number:
                return contact.name or name
        return mask_number(number) if number else "an unknown number"

    def check(self, entry: str) -> None:
        """Raise UnresolvedError unless `entry` names a contact or group, or is a valid number."""
        if entry in self.contacts or entry in self.groups:
            return
        if _LOOKS_LIKE_NUMBER.fullmatch(entry):
            try:
                normalize_number(entry)
            except InvalidNumberError as exc:
                raise UnresolvedError(str(exc)) from None
            return
        names = sorted({*self.contacts, *self.groups})
        raise UnresolvedError(_unknown("contact or group", entry, names))

    def resolve(self, entries: Sequence[str]) -> tuple[Recipient, ...]:
        """Every number the entries reach, first-seen order, once each; raises UnresolvedError."""
        found: dict[str, Recipient] = {}
        for recipient in self._expand(entries, ()):
            found.setdefault(recipient.number, recipient)
        return tuple(found.values())

    def _expand(self, entries: Sequence[str], trail: tuple[str, ...]) -> Iterator[Recipient]:
        for entry in entries:
            self.check(entry)
            if entry in self.contacts:
                contact = self.contacts[entry]
                yield Recipient(contact.number, contact.name or entry)
            elif entry in self.groups:
                if entry not in trail:  # a cycle is reported where the groups are defined
                    yield from self._expand(self.groups[entry], (*trail, entry))
            else:
                number = normalize_number(entry)
                yield Recipient(number, mask_number(number))


def _unknown(what: str, name: str, defined: Sequence[str], also: str = "") -> str:
    """`unknown output 'smss'; did you mean 'sms'? (defined: callback, sms)`."""
    close = difflib.get_close_matches(name, [*defined, also] if also else defined, n=1)
    message = f"unknown {what} '{name}'"
    if close:
        message += f"; did you mean '{close[0]}'?"
    if defined:
        listed = ", ".join(defined[:_LISTED]) + (", …" if len(defined) > _LISTED else "")
        known = f"defined: {listed}"
    else:
        known = f"no {' or '.join(word + 's' for word in what.split(' or '))} are defined"
    return f"{message} ({known}; or '{also}')" if also else f"{message} ({known})"


def _group_cycles(groups: Mapping[str, Sequence[str]]) -> list[tuple[ConfigPath, str]]:
    problems: list[tuple[ConfigPath, str]] = []
    done: set[str] = set()

    def visit(group: str, stack: list[str]) -> None:
        stack.append(group)
        for index, member in enumerate(groups[group]):
            if member in stack:
                cycle = " -> ".join([*stack[stack.index(member) :], member])
                problems.append((("groups", group, index), f"groups form a cycle: {cycle}"))
            elif member in groups and member not in done:
                visit(member, stack)
        stack.pop()
        done.add(group)

    for group in groups:
        if group not in done:
            visit(group, [])
    return problems


def _names(
    value: str | tuple[str, ...] | None, path: ConfigPath
) -> Iterator[tuple[ConfigPath, str]]:
    if isinstance(value, str):
        yield path, value
    elif value is not None:
        for index, item in enumerate(value):
            yield (*path, index), item


def check_references(
    contacts: Mapping[str, ContactConfig],
    groups: Mapping[str, Sequence[str]],
    rules: Sequence[RuleConfig],
    outputs: Collection[str],
    inputs: Collection[str],
    policies: Collection[str] | None = None,
) -> list[tuple[ConfigPath, str]]:
    """Every cross-reference problem: names, numbers, group cycles, outputs, inputs, duplicates,
    escalation policies (None: not known here, so not checked)."""
    problems: list[tuple[ConfigPath, str]] = []
    directory = Directory(contacts, groups)
    output_names, input_names = sorted(outputs), sorted(inputs)
    for name in groups:
        if name in contacts:
            problems.append((("groups", name), f"'{name}' is both a contact and a group"))
    for name, members in groups.items():
        for index, member in enumerate(members):
            try:
                directory.check(member)
            except UnresolvedError as exc:
                problems.append((("groups", name, index), str(exc)))
    cycles = _group_cycles(groups)
    problems.extend(cycles)
    first_use: dict[str, int] = {}
    for number, rule in enumerate(rules):
        where: ConfigPath = ("rules", number)
        if rule.name in first_use:
            first = first_use[rule.name]
            message = f"duplicate rule name '{rule.name}' (first used by rules[{first}])"
            problems.append(((*where, "name"), message))
        first_use.setdefault(rule.name, number)
        for path, source in _names(rule.match.source, (*where, "match", "source")):
            if source not in inputs:
                problems.append((path, _unknown("input", source, input_names)))
        if rule.sms is not None:
            problems.extend(_sms_problems(rule.sms, (*where, "sms"), directory, output_names))
        if rule.post is not None and rule.post.to != CONVERSATION and rule.post.to not in outputs:
            message = _unknown("output", rule.post.to, output_names, CONVERSATION)
            problems.append(((*where, "post", "to"), message))
        if rule.page is not None and policies is not None and rule.page.policy not in policies:
            message = _unknown("policy", rule.page.policy, sorted(policies))
            problems.append(((*where, "page", "policy"), message))
    return problems


def _sms_problems(
    sms: SmsConfig, where: ConfigPath, directory: Directory, outputs: Sequence[str]
) -> list[tuple[ConfigPath, str]]:
    problems: list[tuple[ConfigPath, str]] = []
    if sms.output not in outputs:
        problems.append(((*where, "output"), _unknown("output", sms.output, outputs)))
    for index, entry in enumerate(sms.to):
        try:
            directory.check(entry)
        except UnresolvedError as exc:
            problems.append(((*where, "to", index), str(exc)))
    try:
        if not directory.resolve(sms.to):
            problems.append(((*where, "to"), "these groups hold no numbers"))
    except UnresolvedError:
        pass  # reported above, or where the group is defined
    return problems
