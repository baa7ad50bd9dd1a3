"""Tests for compiling templates, rendering them safely, the SMS filters and the defaults."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.events import Event, EventKind, Status
from bridge.plugins.c123.validation import check_content
from bridge.rules.config import RulesConfig
from bridge.rules.ruleset import RuleSet
from bridge.rules.templates import (
    DEFAULT_GROUP_TEMPLATE,
    DEFAULT_POST_TEMPLATE,
    DEFAULT_TEMPLATE,
    TemplateError,
    age,
    compile_template,
    event_context,
    format_age,
    group_context,
    group_fallback_text,
    join_more,
    latest_per_alert,
    make_environment,
    mask,
    oneline,
    render,
    shorten,
    truncate_segments,
)
from bridge.sms import segment_count

NOW = datetime(2024, 5, 1, 1, 30, tzinfo=UTC)
SIGNATURE = "【smsbridge】"


def text_of(source: str, /, **context: object) -> str:
    """Render `source` with the default environment and return the text (or the fallback)."""
    return render(compile_template(source, make_environment()), context, "FALLBACK").text


def alert(status: Status = Status.FIRING, **labels: str) -> Event:
    """An alert event with the given labels."""
    return Event(EventKind.ALERT, "am", labels=labels, status=status)


# --- compiling -------------------------------------------------------------------------------


def test_syntax_error_names_the_line_inside_the_template() -> None:
    """A syntax error says the line within the template and Jinja's message."""
    with pytest.raises(TemplateError) as info:
        compile_template("[{{ status }}]\n{{ labels.x }\n")
    assert str(info.value) == "template error on line 2: unexpected '}'"


def test_unknown_filter_is_a_compile_error() -> None:
    """A filter that does not exist is found when compiling, not at 3 a.m."""
    with pytest.raises(TemplateError) as info:
        compile_template("{{ text|nope }}")
    assert str(info.value) == "template error on line 1: No filter named 'nope'."


def test_default_templates_compile() -> None:
    """The three default templates are valid."""
    for source in (DEFAULT_TEMPLATE, DEFAULT_GROUP_TEMPLATE, DEFAULT_POST_TEMPLATE):
        compile_template(source)


# --- rendering never raises ----------------------------------------------------------------


def test_missing_values_render_empty() -> None:
    """Missing labels, nested keys and filters applied to them render as empty text."""
    source = "a{{ labels.nope }}b{{ data.x.y.z|upper }}c{{ labels.nope|shorten(3) }}d"
    assert text_of(source, labels={}, data={}) == "abcd"


def test_runtime_error_falls_back_with_a_reason() -> None:
    """An error while rendering returns the fallback text and says why, instead of raising."""
    template = compile_template("{{ labels.count + 1 }}", make_environment())
    result = render(template, {"labels": {}}, "[FIRING] HighLatency")
    assert result.text == "[FIRING] HighLatency"
    assert result.error is not None
    assert "UndefinedError" in result.error


def test_sandbox_violation_falls_back() -> None:
    """Templates cannot change event data: the sandbox refuses, and rendering falls back."""
    data = {"hosts": ["db1"]}
    template = compile_template("{{ data.hosts.append('db2') }}", make_environment())
    result = render(template, {"data": data}, "fallback")
    assert (result.text, data) == ("fallback", {"hosts": ["db1"]})
    assert result.error is not None
    assert "SecurityError" in result.error


def test_render_error_masks_numbers() -> None:
    """The reason handed to the caller's log never carries a full phone number."""
    template = compile_template("{{ 1 // 0 }}{{ x }}", make_environment())
    result = render(template, {"x": "15102110086"}, "fb")
    assert result.error == "ZeroDivisionError: integer division or modulo by zero"
    template = compile_template("{{ x.nope() }}", make_environment())
    result = render(template, {"x": "call 15102110086"}, "fb")
    assert result.error is not None
    assert "15102110086" not in result.error


def test_empty_text_falls_back() -> None:
    """A template that renders nothing but whitespace gives the fallback, never an empty SMS."""
    result = render(compile_template("  {{ labels.nope }}\n"), {"labels": {}}, "fb")
    assert (result.text, result.error) == ("fb", "the template rendered an empty text")


# --- filters ---------------------------------------------------------------------------------


def test_truncate_segments_keeps_text_that_fits() -> None:
    """A text that fits is returned unchanged, signature counted."""
    text = "x" * (70 - len(SIGNATURE))
    assert truncate_segments(text, 1, SIGNATURE) == text


def test_truncate_segments_cuts_with_an_ellipsis() -> None:
    """A long text is cut to fit, with the signature, and ends with an ellipsis."""
    cut = truncate_segments("word " * 100, 2, SIGNATURE)
    assert cut.startswith("word word ")
    assert cut.endswith("…")
    assert not cut.endswith(" …")
    assert segment_count(cut, SIGNATURE) == 2
    assert len(cut) + len(SIGNATURE) <= 134


def test_truncate_segments_never_splits_an_emoji() -> None:
    """Characters outside the BMP count twice and are never cut in half."""
    cut = truncate_segments("🔥" * 100, 1)
    assert cut == "🔥" * 34 + "…"


def test_truncate_segments_filter_uses_the_signature() -> None:
    """In a template, `truncate_segments(n)` counts the environment's signature."""
    env = make_environment(signature=SIGNATURE)
    text = render(env.from_string("{{ text|truncate_segments(1) }}"), {"text": "y" * 200}, "")
    assert segment_count(text.text, SIGNATURE) == 1
    assert len(text.text) == 70 - len(SIGNATURE)


@given(
    text=st.text(),
    segments=st.integers(min_value=1, max_value=10),
    signature=st.text(max_size=20),
)
def test_truncate_segments_always_fits(text: str, segments: int, signature: str) -> None:
    """Whatever the text, the result and the signature fit the segments asked for."""
    cut = truncate_segments(text, segments, signature)
    assert segment_count(cut, signature) <= segments
    assert cut == text or cut.endswith("…")


@pytest.mark.parametrize(
    ("items", "limit", "expected"),
    [
        (["db1", "db2", "db3", "db4", "db5"], 2, "db1, db2 (+3)"),
        (["db1", "db2"], 2, "db1, db2"),
        (["db1"], 0, "(+1)"),
        ([], 3, ""),
        ("db1", 2, "db1"),
    ],
)
def test_join_more(items: list[str] | str, limit: int, expected: str) -> None:
    """The first items are listed, the rest counted; a single string counts as one item."""
    assert join_more(items, limit) == expected


@given(items=st.lists(st.text()), limit=st.integers(min_value=0, max_value=8), sep=st.text())
def test_join_more_mentions_or_counts_every_item(items: list[str], limit: int, sep: str) -> None:
    """Every item is either shown in order or counted in the (+K) suffix."""
    shown = items[:limit]
    rest = len(items) - len(shown)
    suffix = f"(+{rest})" if rest else ""
    joined = sep.join(shown)
    expected = f"{joined} {suffix}" if joined and suffix else joined or suffix
    assert join_more(items, limit, sep) == expected


def test_shorten_oneline_mask() -> None:
    """Long values are cut, whitespace flattened, and phone numbers masked."""
    assert shorten("db-primary-replica-7.prod.example.com", 12) == "db-primary-…"
    assert shorten("db1", 12) == "db1"
    assert oneline("  disk\n full \t on db1 ") == "disk full on db1"
    assert mask("call +8615102110086 now") == "call 151****0086 now"


def test_age_and_localtime() -> None:
    """`age` gives a compact duration; `localtime` shows a moment in the rules' zone."""
    assert age("2024-05-01T00:25:00.000000001Z", NOW) == "1h5m"
    assert age("not a time", NOW) == ""
    assert format_age(timedelta(days=2, hours=3, minutes=4)) == "2d3h"
    assert format_age(timedelta(seconds=-5)) == "0s"
    env = make_environment(zone=ZoneInfo("Asia/Shanghai"))
    rendered = render(
        env.from_string("{{ now|localtime }} {{ now|localtime('%H:%M', 'UTC') }}"), {"now": NOW}, ""
    )
    assert rendered.text == "05-01 09:30 01:30"


# --- default templates ----------------------------------------------------------------------


def test_default_template_for_an_alert() -> None:
    """An alert shows status, name, instance and its summary."""
    event = Event(
        EventKind.ALERT,
        "am",
        labels={"alertname": "HighLatency", "instance": "db1"},
        data={"annotations": {"summary": "p99 above\n2s"}},
    )
    source = DEFAULT_TEMPLATE
    assert text_of(source, **event_context(event, NOW)) == "[FIRING] HighLatency db1: p99 above 2s"


def test_default_template_without_labels() -> None:
    """An alert with no labels at all still renders its status and text."""
    event = Event(EventKind.ALERT, "grafana", text="Disk full", status=Status.RESOLVED)
    assert text_of(DEFAULT_TEMPLATE, **event_context(event, NOW)) == "[RESOLVED] Disk full"


def test_default_template_for_a_command() -> None:
    """A chat command or a reply is not an alert, so no status is shown."""
    event = Event(EventKind.COMMAND, "slack", text="please call back")
    assert text_of(DEFAULT_TEMPLATE, **event_context(event, NOW)) == "please call back"


def test_default_group_template_exact_shape() -> None:
    """Five firing alerts on five instances give `[FIRING:5] HighLatency db1, db2 (+3)`."""
    events = [alert(alertname="HighLatency", instance=f"db{i}") for i in range(1, 6)]
    context = group_context(events, ["alertname"], NOW)
    assert text_of(DEFAULT_GROUP_TEMPLATE, **context) == "[FIRING:5] HighLatency db1, db2 (+3)"


def test_default_group_template_mixed_and_resolved() -> None:
    """Resolved alerts in a firing group are named under RESOLVED; an alert sent twice counts
    once; an all-resolved group says RESOLVED."""
    events = [
        alert(alertname="HighLatency", instance="db1"),
        alert(Status.RESOLVED, alertname="HighLatency", instance="db2"),
        alert(alertname="HighLatency", instance="db1"),
    ]
    context = group_context(events, ["alertname"], NOW)
    assert (
        text_of(DEFAULT_GROUP_TEMPLATE, **context) == "[FIRING:1] HighLatency db1; [RESOLVED:1] db2"
    )
    resolved = [alert(Status.RESOLVED, alertname="DiskFull")]
    context = group_context(resolved, ["alertname"], NOW)
    assert text_of(DEFAULT_GROUP_TEMPLATE, **context) == "[RESOLVED:1] DiskFull"


def test_an_alert_that_fired_and_resolved_in_the_wait_is_resolved_only() -> None:
    """Fired, then resolved within one group_wait: `[RESOLVED:1] DiskFull db1`, said once."""
    fired = Event(EventKind.ALERT, "am", labels={"alertname": "DiskFull", "instance": "db1"})
    over = Event(
        EventKind.ALERT,
        "am",
        labels={"alertname": "DiskFull", "instance": "db1"},
        status=Status.RESOLVED,
    )
    context = group_context([fired, over], ["alertname"], NOW)
    assert (context["count"], context["firing"], context["resolved"]) == (1, 0, 1)
    assert text_of(DEFAULT_GROUP_TEMPLATE, **context) == "[RESOLVED:1] DiskFull db1"
    assert group_fallback_text([fired, over], ["alertname"]) == "[RESOLVED:1] DiskFull"
    # Resolved and then firing again: firing is what it is now.
    context = group_context([fired, over, fired], ["alertname"], NOW)
    assert text_of(DEFAULT_GROUP_TEMPLATE, **context) == "[FIRING:1] DiskFull db1"


def test_latest_per_alert_knows_alerts_by_fingerprint_else_by_labels() -> None:
    """The fingerprint says which notifications are one alert; without one, source and labels
    do (the text, for an alert with no labels); the first appearance keeps its place."""
    a1 = Event(EventKind.ALERT, "am", labels={"instance": "db1"}, fingerprint="a")
    b = Event(EventKind.ALERT, "am", labels={"instance": "db2"}, fingerprint="b")
    a2 = Event(
        EventKind.ALERT,
        "am",
        labels={"instance": "db1", "x": "y"},
        fingerprint="a",
        status=Status.RESOLVED,
    )
    assert latest_per_alert([a1, b, a2]) == [a2, b]
    plain = [Event(EventKind.ALERT, "am", labels={"instance": "db1"}) for _ in range(2)]
    other_source = Event(EventKind.ALERT, "grafana", labels={"instance": "db1"})
    assert latest_per_alert([*plain, other_source]) == [plain[1], other_source]
    texts = [Event(EventKind.ALERT, "am", text=t) for t in ("disk", "cpu", "disk")]
    assert latest_per_alert(texts) == [texts[2], texts[1]]


GROUP_TEXT = re.compile(
    r"\[(?P<head>FIRING|RESOLVED):(?P<count>\d+)\] DiskFull(?: (?P<listed>[^;]+))?"
    r"(?:; \[RESOLVED:(?P<over>\d+)\](?: (?P<over_listed>.+))?)?"
)
MORE = re.compile(r"^(?P<names>.*?)(?: ?\(\+(?P<more>\d+)\))?$")


def listed(part: str | None) -> tuple[list[str], int]:
    """The names a `db1, db2 (+3)` part shows, and how many more it counts."""
    if not part:
        return [], 0
    match = MORE.fullmatch(part)
    assert match is not None
    names = match["names"].split(", ") if match["names"] else []
    return names, int(match["more"] or 0)


@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=4), st.sampled_from(list(Status))),
        min_size=1,
        max_size=16,
    )
)
def test_group_summary_says_each_alert_once(steps: list[tuple[int, Status]]) -> None:
    """Any sequence of fire/resolve notifications for up to five alerts: every alert is named
    (or counted in `(+N)`) exactly once, under its latest status, and the counts add up."""
    events = [
        Event(
            EventKind.ALERT,
            "am",
            labels={"alertname": "DiskFull", "instance": f"db{n}"},
            status=status,
            fingerprint=f"f{n}",
        )
        for n, status in steps
    ]
    latest = {f"db{n}": status for n, status in steps}
    firing = {name for name, status in latest.items() if status is Status.FIRING}
    resolved = set(latest) - firing
    context = group_context(events, ["alertname"], NOW)
    assert [a["labels"]["instance"] for a in context["alerts"]] == list(latest)
    assert (context["firing"], context["resolved"]) == (len(firing), len(resolved))
    assert context["count"] == len(latest) == context["firing"] + context["resolved"]

    text = text_of(DEFAULT_GROUP_TEMPLATE, **context)
    match = GROUP_TEXT.fullmatch(text)
    assert match is not None, text
    sections = [(match["head"], int(match["count"]), *listed(match["listed"]))]
    if match["over"] is not None:
        sections.append(("RESOLVED", int(match["over"]), *listed(match["over_listed"])))
    expected = {"FIRING": firing, "RESOLVED": resolved}
    assert [head for head, *_ in sections] == (
        ["FIRING", "RESOLVED"][: 1 + bool(resolved)] if firing else ["RESOLVED"]
    )
    named: list[str] = []
    for head, count, names, more in sections:
        assert count == len(expected[head]) == len(names) + more, text
        assert set(names) <= expected[head], text
        named.extend(names)
    assert len(named) == len(set(named)), f"an alert is named twice: {text!r}"
    assert sum(count for _, count, *_ in sections) == len(latest)


# --- what a rendered text may carry ----------------------------------------------------------

HOSTILE = [
    "\x1b[31m",
    "\x1b]0;pwned\x07",
    "\x1b",
    "\x9b2J",
    "\x00",
    "\x7f",
    "\x85",
    "\u202e",
    "\u2066",
    "\ud800",
    "\uffff",
    "\r\n",
    "\n",
    "\t",
]
field_text = st.lists(
    st.sampled_from(HOSTILE)
    | st.text(st.characters(codec=None, exclude_categories=()), max_size=8),
    max_size=8,
).map("".join)
CONTROLS_BUT_NEWLINE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
RAW_SMS = "{{ text }} {{ labels.alertname }} {{ labels.instance }} {{ data.annotations.summary }}"
BROKEN = "{{ labels.alertname + 1 }}"  # falls back: the fallback text is made of the fields too


def ruleset(*rules: dict[str, Any]) -> RuleSet:
    """Rules sending to alice, as `smsbridge run` would build them."""
    config = RulesConfig.model_validate({"contacts": {"alice": "15102110086"}, "rules": rules})
    return RuleSet.build(config.rules, config.contacts, config.groups, UTC, SIGNATURE)


SMS_RULES = ruleset(
    *(
        {"name": name, "match": {}, "sms": {"to": ["alice"], **templates}, "continue": True}
        for name, templates in (
            ("default", {}),
            (
                "raw",
                {"template": RAW_SMS, "group_template": RAW_SMS.replace("{{ ", "{{ alerts[0].")},
            ),
            ("broken", {"template": BROKEN, "group_template": BROKEN}),
        )
    ),
    {"name": "chat", "match": {}, "post": {"to": "conversation"}},
    {"name": "raw-chat", "match": {}, "post": {"to": "conversation", "template": RAW_SMS}},
)


def hostile_event(texts: Sequence[str], kind: EventKind, status: Status) -> Event:
    name, instance, summary, text = texts
    return Event(
        kind,
        "am",
        labels={"alertname": name, "instance": instance, "summary": summary},
        text=text,
        data={"annotations": {"summary": summary}},
        status=status,
        fingerprint=name,
    )


def test_a_label_with_an_escape_sequence_renders_a_sendable_sms() -> None:
    """The label that got a 200 and then failed "contains control character" now sends."""
    event = hostile_event(
        ["\x1b[31mDiskFull\x1b[0m", "db\x1b1", "disk\r\n97%\u202e full", ""],
        EventKind.ALERT,
        Status.FIRING,
    )
    decisions = {d.rule: d for d in SMS_RULES.evaluate(event, NOW)}
    assert decisions["default"].render("sms") == "[FIRING] DiskFull db 1: disk 97%  full"
    assert decisions["broken"].render("sms") == "[FIRING] DiskFull"
    assert decisions["chat"].render("post") == "[FIRING] DiskFull db 1: disk\n97%  full"
    for decision in decisions.values():
        check_content(decision.render())
    assert event.labels["alertname"] == "\x1b[31mDiskFull\x1b[0m", "stored as it came"


@given(
    texts=st.lists(field_text, min_size=4, max_size=4),
    kind=st.sampled_from(list(EventKind)),
    status=st.sampled_from(list(Status)),
)
def test_any_event_field_renders_an_sms_the_gateway_takes(
    texts: list[str], kind: EventKind, status: Status
) -> None:
    """Whatever the fields hold, every SMS (alone, grouped, or fallen back) passes the gateway's
    content check and is on one line, and every chat text is free of controls but newlines."""
    event = hostile_event(texts, kind, status)
    for decision in SMS_RULES.evaluate(event, NOW):
        if decision.sms is not None:
            text = decision.render("sms")
            check_content(text)
            assert "\n" not in text
            group = SMS_RULES.render_group(decision.rule, [event, event], NOW)
            check_content(group)
            assert "\n" not in group
        else:
            chat = decision.render("post")
            assert chat.strip()
            assert not CONTROLS_BUT_NEWLINE.search(chat)
            chat.encode("utf-8")


def test_group_context_labels() -> None:
    """Group labels are the group_by values; common labels are those every alert shares."""
    events = [
        alert(alertname="A", env="prod", instance="db1"),
        alert(alertname="A", env="prod", instance="db2"),
    ]
    context = group_context(events, ["alertname", "cluster"], NOW)
    assert context["group_labels"] == {"alertname": "A", "cluster": ""}
    assert context["common_labels"] == {"alertname": "A", "env": "prod"}
    assert (context["count"], context["firing"], context["resolved"]) == (2, 2, 0)


def test_default_group_template_says_what_the_alerts_say() -> None:
    """The summary annotation is in the SMS when the group's alerts all say the same; two
    different summaries would not fit, so neither is shown."""
    said = {"annotations": {"summary": "disk / is\n97% full"}}
    one = Event(
        EventKind.ALERT, "am", labels={"alertname": "DiskFull", "instance": "db1"}, data=said
    )
    context = group_context([one], ["alertname"], NOW)
    assert (
        text_of(DEFAULT_GROUP_TEMPLATE, **context) == "[FIRING:1] DiskFull db1: disk / is 97% full"
    )
    other = Event(
        EventKind.ALERT,
        "am",
        labels={"alertname": "DiskFull", "instance": "db2", "summary": "disk /var is 91% full"},
    )
    context = group_context([one, other], ["alertname"], NOW)
    assert text_of(DEFAULT_GROUP_TEMPLATE, **context) == "[FIRING:2] DiskFull db1, db2"
    assert event_context(other, NOW)["summary"] == "disk /var is 91% full"
