"""Routing rules, compiled from config: which rules an event matches, what to send and its text."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Literal

from jinja2 import Template
from jinja2.sandbox import ImmutableSandboxedEnvironment

from bridge.config import ConfigPath, format_path
from bridge.events import Event, EventKind, Status
from bridge.rules.config import (
    CONVERSATION,
    ContactConfig,
    Directory,
    Recipient,
    RuleConfig,
    UnresolvedError,
    WindowConfig,
)
from bridge.rules.matchers import (
    Matcher,
    MatchOp,
    Window,
    equality_matchers,
    escape_value,
    matches_all,
)
from bridge.rules.templates import (
    Rendered,
    TemplateError,
    compile_template,
    event_context,
    fallback_text,
    group_context,
    group_fallback_text,
    make_environment,
    render,
    truncate_segments,
)
from bridge.sms import InvalidNumberError, normalize_number

__all__ = [
    "Decision",
    "PageAction",
    "PostAction",
    "Recipient",
    "RuleError",
    "RuleSet",
    "SmsAction",
    "Window",
]

Action = Literal["sms", "post"]
OUTSIDE_WINDOW = "outside its time window"


class RuleError(ValueError):
    """A rule that cannot be built: a template that does not compile, a name that is unknown."""

    def __init__(self, path: ConfigPath, message: str) -> None:
        super().__init__(f"{format_path(path)}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True, slots=True)
class SmsAction:
    """Send an SMS: through which output, to whom, and how to group, repeat and cap it."""

    output: str
    recipients: tuple[Recipient, ...]
    group_wait: timedelta
    group_by: tuple[str, ...]
    repeat_interval: timedelta
    send_resolved: bool
    cap_per_hour: int | None
    retry_ambiguous: bool
    max_segments: int

    def wants(self, event: Event) -> bool:
        """Whether this event gets a message: firing ones do, resolved ones if send_resolved."""
        return event.status is Status.FIRING or self.send_resolved

    def recipients_for(self, event: Event) -> tuple[Recipient, ...]:
        """Who gets this event's SMS: everyone named, except the phone a reply came from (it
        knows what it said)."""
        if event.kind is not EventKind.REPLY:
            return self.recipients
        sender = str(event.data.get("mobile", ""))
        try:
            sender = normalize_number(sender)
        except InvalidNumberError:
            return self.recipients
        return tuple(r for r in self.recipients if r.number != sender)


@dataclass(frozen=True, slots=True)
class PostAction:
    """Post a message to an output; None means the event's own conversation."""

    output: str | None


@dataclass(frozen=True, slots=True)
class PageAction:
    """Page through an escalation policy: one incident per rule and group_by values. Pages go
    through the SMS gateway, whose delivery reports drive the failover."""

    policy: str
    group_by: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Templates:
    sms: Template | None
    group: Template | None
    post: Template | None
    signature: str


# A rule that names no kind takes alerts and the daemon's own events. Replies and delivery
# reports carry their alert's labels: a label-only rule matching them would page again on every
# report, whose SMS gets a report of its own: a loop. They are matched only when asked for.
DEFAULT_KINDS = frozenset({EventKind.ALERT, EventKind.SYSTEM})


@dataclass(frozen=True)
class Decision:
    """One rule matched one event: the actions it takes, and the text for each."""

    rule: str
    event: Event
    sms: SmsAction | None
    post: PostAction | None
    now: datetime
    templates: _Templates = field(repr=False, compare=False)
    _texts: dict[str, Rendered] = field(default_factory=dict, repr=False, compare=False)
    page: PageAction | None = None

    def prerender(self) -> None:
        """Render every text this decision will need now, so a later `render` only looks it up."""
        if self.sms is not None:
            self.rendered("sms")
        if self.post is not None:
            self.rendered("post")

    def rendered(self, action: Action | None = None) -> Rendered:
        """The text for this event, and why the fallback was used if it was (for the caller to log).

        `action` defaults to the SMS when the rule has one; an SMS is always cut to max_segments.
        """
        key = action or ("sms" if self.sms is not None else "post")
        cached = self._texts.get(key)
        if cached is None:
            cached = self._texts[key] = self._render(action)
        return cached

    def _render(self, action: Action | None) -> Rendered:
        if action == "post" or (action is None and self.sms is None):
            template = self.templates.post
            if template is None:
                raise ValueError(f"rule {self.rule!r} has no post action")
            return render(template, event_context(self.event, self.now), fallback_text(self.event))
        if self.sms is None or self.templates.sms is None:
            raise ValueError(f"rule {self.rule!r} has no sms action")
        result = render(
            self.templates.sms,
            event_context(self.event, self.now),
            fallback_text(self.event),
            one_line=True,
        )
        text = truncate_segments(result.text, self.sms.max_segments, self.templates.signature)
        return Rendered(text, result.error)

    def render(self, action: Action | None = None) -> str:
        """The SMS text (or the post text, for `post` or a rule without SMS) for this event."""
        return self.rendered(action).text

    def group_key(self) -> str:
        """The rule and the group_by label values, stable: `page{alertname="HighLatency"}`."""
        if self.page is not None:
            names = self.page.group_by  # the incident key: every input and HA peer agree on it
        else:
            names = self.sms.group_by if self.sms is not None else ()
        values = ",".join(
            f'{name}="{escape_value(self.event.labels.get(name, ""))}"' for name in names
        )
        return f"{self.rule}{{{values}}}"


@dataclass(frozen=True, slots=True)
class _Rule:
    name: str
    kinds: frozenset[EventKind] | None
    sources: frozenset[str] | None
    status: str
    matchers: tuple[Matcher, ...]
    window: Window | None
    sms: SmsAction | None
    post: PostAction | None
    page: PageAction | None
    templates: _Templates
    continue_: bool

    def matches_apart_from_window(self, event: Event) -> bool:
        """The match test without the window, and without building a reason (the hot path)."""
        return (
            (self.kinds is None or event.kind in self.kinds)
            and (self.sources is None or event.source in self.sources)
            and (self.status == "any" or event.status.value == self.status)
            and matches_all(self.matchers, event.labels)
        )

    def mismatch(self, event: Event, now: datetime) -> str | None:
        """Why the event does not match, or None when it does."""
        if self.kinds is not None and event.kind not in self.kinds:
            return f"kind is {event.kind.value}, not {', '.join(sorted(self.kinds))}"
        if self.sources is not None and event.source not in self.sources:
            return f"source is {event.source!r}, not {', '.join(sorted(self.sources))}"
        if self.status != "any" and event.status.value != self.status:
            return f"status is {event.status.value}, not {self.status}"
        for matcher in self.matchers:
            if not matcher.matches(event.labels):
                actual = event.labels.get(matcher.name, "")
                return f"{matcher} does not hold ({matcher.name} is {actual!r})"
        if self.window is not None and not self.window.contains(now):
            return OUTSIDE_WINDOW
        return None


def _window(config: WindowConfig | None, default_tz: tzinfo) -> Window | None:
    if config is None:
        return None
    return Window(config.days, config.hours, config.timezone or default_tz)


def _compile(env: ImmutableSandboxedEnvironment, path: ConfigPath, source: str) -> Template:
    try:
        return _compiled(env, source)
    except TemplateError as exc:
        raise RuleError(path, str(exc)) from None


# Most rules share the default templates: compile each text once per environment, not per rule.
@functools.lru_cache(maxsize=1024)
def _compiled(env: ImmutableSandboxedEnvironment, source: str) -> Template:
    return compile_template(source, env)


def _build_rule(
    index: int,
    rule: RuleConfig,
    directory: Directory,
    env: ImmutableSandboxedEnvironment,
    default_tz: tzinfo,
    signature: str,
) -> _Rule:
    where: ConfigPath = ("rules", index)
    sms = post = None
    if rule.sms is not None:
        try:
            recipients = directory.resolve(rule.sms.to)
        except UnresolvedError as exc:
            raise RuleError((*where, "sms", "to"), str(exc)) from None
        sms = SmsAction(
            output=rule.sms.output,
            recipients=recipients,
            group_wait=rule.sms.group_wait,
            group_by=tuple(rule.sms.group_by),
            repeat_interval=rule.sms.repeat_interval,
            send_resolved=rule.sms.send_resolved,
            cap_per_hour=rule.sms.cap_per_hour,
            retry_ambiguous=rule.sms.retry_ambiguous,
            max_segments=rule.sms.max_segments,
        )
    if rule.post is not None:
        post = PostAction(None if rule.post.to == CONVERSATION else rule.post.to)
    page = None
    if rule.page is not None:
        page = PageAction(rule.page.policy, tuple(rule.page.group_by))
    templates = _Templates(
        sms=_compile(env, (*where, "sms", "template"), rule.sms.template) if rule.sms else None,
        group=_compile(env, (*where, "sms", "group_template"), rule.sms.group_template)
        if rule.sms
        else None,
        post=_compile(env, (*where, "post", "template"), rule.post.template) if rule.post else None,
        signature=signature,
    )
    return _Rule(
        name=rule.name,
        kinds=rule.match.kind if rule.match.kind is not None else DEFAULT_KINDS,
        sources=rule.match.sources(),
        status=rule.match.status,
        matchers=(*equality_matchers(rule.match.labels), *rule.match.matchers),
        window=_window(rule.match.when, default_tz),
        sms=sms,
        post=post,
        page=page,
        templates=templates,
        continue_=rule.continue_,
    )


def _label_index(
    rules: Sequence[_Rule],
) -> tuple[str | None, tuple[int, ...], dict[str, tuple[int, ...]]]:
    """Index rules by the label most of them require to equal a value (`team: db`, say).

    With many rules keyed on one label, an event is tested only against the rules that want its
    value and the rules that do not require the label at all.
    """
    counts: dict[str, int] = {}
    for rule in rules:
        for name in {m.name for m in rule.matchers if m.op is MatchOp.EQUAL}:
            counts[name] = counts.get(name, 0) + 1
    if not counts or max(counts.values()) < 8:
        return None, (), {}  # too few rules to be worth it
    label = max(sorted(counts), key=lambda name: counts[name])
    unindexed: list[int] = []
    by_value: dict[str, list[int]] = {}
    for position, rule in enumerate(rules):
        required = {m.value for m in rule.matchers if m.name == label and m.op is MatchOp.EQUAL}
        if len(required) == 1:
            by_value.setdefault(required.pop(), []).append(position)
        elif required:
            continue  # two different required values: it can never match
        else:
            unindexed.append(position)
    return label, tuple(unindexed), {k: tuple(v) for k, v in by_value.items()}


class RuleSet:
    """Compiled rules: pure, so `smsbridge route` can show what an event would cause, and why."""

    def __init__(self, rules: Sequence[_Rule]) -> None:
        self._rules = tuple(rules)
        self._by_name = {rule.name: rule for rule in self._rules}
        self._index_label, self._unindexed, self._by_value = _label_index(self._rules)

    @classmethod
    def build(
        cls,
        rules: Sequence[RuleConfig],
        contacts: Mapping[str, ContactConfig],
        groups: Mapping[str, Sequence[str]],
        default_tz: tzinfo,
        signature: str = "",
    ) -> RuleSet:
        """Compile templates, matchers and recipients; raises RuleError on the first problem.

        `signature` is the text the gateway appends, counted when cutting SMS to max_segments.
        """
        env = make_environment(signature, default_tz)
        directory = Directory(contacts, groups)
        built: list[_Rule] = []
        for index, rule in enumerate(rules):
            if any(other.name == rule.name for other in built):
                raise RuleError(("rules", index, "name"), f"duplicate rule name '{rule.name}'")
            built.append(_build_rule(index, rule, directory, env, default_tz, signature))
        return cls(built)

    @property
    def names(self) -> tuple[str, ...]:
        """The rule names, in order."""
        return tuple(rule.name for rule in self._rules)

    def sms_action(self, rule: str) -> SmsAction | None:
        """The SMS action of the rule with this name; None if there is no such rule or action."""
        found = self._by_name.get(rule)
        return found.sms if found is not None else None

    def smallest_cap(self, output: str) -> int | None:
        """The lowest cap_per_hour of the rules sending SMS through `output`; None if none caps."""
        caps = [
            rule.sms.cap_per_hour
            for rule in self._rules
            if rule.sms is not None and rule.sms.output == output and rule.sms.cap_per_hour
        ]
        return min(caps, default=None)

    def evaluate(self, event: Event, now: datetime) -> list[Decision]:
        """The rules the event matches, in order; the first match ends it unless it continues."""
        return self.evaluate_windows(event, now)[0]

    def evaluate_windows(self, event: Event, now: datetime) -> tuple[list[Decision], list[str]]:
        """evaluate(), plus the rules reached that matched in all but their time window.

        Those are counted as suppressed by window: nothing about such an event goes unseen.
        """
        decisions: list[Decision] = []
        outside: list[str] = []
        for rule in self._candidates(event):
            if not rule.matches_apart_from_window(event):
                continue
            if rule.window is not None and not rule.window.contains(now):
                outside.append(rule.name)
                continue
            decisions.append(
                Decision(rule.name, event, rule.sms, rule.post, now, rule.templates, page=rule.page)
            )
            if not rule.continue_:
                break
        return decisions, outside

    def _candidates(self, event: Event) -> Iterable[_Rule]:
        """The rules that can match, in order: those whose required value of the index label
        differs from the event's are skipped without testing (a shortcut, same result)."""
        if self._index_label is None:
            return self._rules
        value = event.labels.get(self._index_label, "")
        positions = sorted((*self._unindexed, *self._by_value.get(value, ())))
        return (self._rules[i] for i in positions)

    def explain(self, event: Event, now: datetime) -> list[tuple[str, str | None]]:
        """Every rule with why it did not match the event (None: it matched), for dry runs."""
        return [(rule.name, rule.mismatch(event, now)) for rule in self._rules]

    def render_group_result(
        self, rule: str, events: Sequence[Event], now: datetime | None = None
    ) -> Rendered:
        """The summary SMS for a group, cut to max_segments, and why the fallback was used if so.

        `now` defaults to the newest event's receipt time, so rendering reads no clock.
        """
        found = self._by_name.get(rule)
        if found is None or found.sms is None or found.templates.group is None:
            raise ValueError(f"no rule {rule!r} with an sms action")
        if not events:
            raise ValueError("a group needs at least one event")
        moment = now if now is not None else max(event.received_at for event in events)
        context = group_context(events, found.sms.group_by, moment)
        result = render(
            found.templates.group,
            context,
            group_fallback_text(events, found.sms.group_by),
            one_line=True,
        )
        text = truncate_segments(result.text, found.sms.max_segments, found.templates.signature)
        return Rendered(text, result.error)

    def render_group(self, rule: str, events: Sequence[Event], now: datetime | None = None) -> str:
        """The summary SMS for a group of one rule's events: `[FIRING:5] HighLatency db1, db2`."""
        return self.render_group_result(rule, events, now).text
