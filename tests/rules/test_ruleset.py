"""Tests for the rules engine: matching, windows, recipients, decisions and rendered texts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.events import Conversation, Event, EventKind, Status
from bridge.rules.config import RulesConfig
from bridge.rules.ruleset import PageAction, PostAction, Recipient, RuleError, RuleSet
from bridge.sms import segment_count

SHANGHAI = ZoneInfo("Asia/Shanghai")
SIGNATURE = "【smsbridge】"
# Wednesday 2024-05-01 09:30 in Shanghai.
NOW = datetime(2024, 5, 1, 1, 30, tzinfo=UTC)
CONTACTS = {
    "alice": "+8615102110086",
    "bob": {"number": "15102110087", "name": "Bob Li"},
    "carol": "15102110088",
}
GROUPS = {"oncall": ["alice", "bob", "15102110089"], "everyone": ["oncall", "carol", "alice"]}


def build(*rules: dict[str, Any], signature: str = "") -> RuleSet:
    """A RuleSet from rule mappings, with the test contacts and groups."""
    config = RulesConfig.model_validate({"contacts": CONTACTS, "groups": GROUPS, "rules": rules})
    return RuleSet.build(config.rules, config.contacts, config.groups, SHANGHAI, signature)


def sms_rule(name: str = "r", match: dict[str, Any] | None = None, **sms: Any) -> dict[str, Any]:
    """A rule sending SMS to alice unless `sms` says otherwise."""
    return {"name": name, "match": match or {}, "sms": {"to": ["alice"], **sms}}


def alert(
    status: Status = Status.FIRING, source: str = "am", fingerprint: str = "f1", **labels: str
) -> Event:
    """An alert from `source` with the given labels."""
    return Event(EventKind.ALERT, source, labels=labels, status=status, fingerprint=fingerprint)


def matched(rules: RuleSet, event: Event, now: datetime = NOW) -> list[str]:
    """The names of the rules the event matched."""
    return [decision.rule for decision in rules.evaluate(event, now)]


# --- matching --------------------------------------------------------------------------------


def test_equality_shorthand_and_matchers_all_hold() -> None:
    """Every label condition must hold: the shorthand and each matcher."""
    rules = build(
        sms_rule(
            match={
                "labels": {"severity": "critical"},
                "matchers": ['team!="db"', 'instance=~"db[0-9]+"', 'env!~"dev|test"'],
            }
        )
    )
    good = {"severity": "critical", "team": "web", "instance": "db12", "env": "prod"}
    assert matched(rules, alert(**good)) == ["r"]
    for label, value in [
        ("severity", "warning"),
        ("team", "db"),
        ("instance", "db12x"),
        ("env", "test"),
    ]:
        assert matched(rules, alert(**(good | {label: value}))) == []


def test_a_missing_label_is_empty() -> None:
    """A missing label is "": it fails an equality, and passes a negation."""
    rules = build(
        sms_rule("eq", match={"labels": {"team": "db"}}),
        sms_rule("neq", match={"matchers": ['team!="db"']}),
    )
    assert matched(rules, alert()) == ["neq"]


@pytest.mark.parametrize(
    ("status", "event_status", "expected"),
    [
        ("firing", Status.FIRING, True),
        ("firing", Status.RESOLVED, False),
        ("resolved", Status.RESOLVED, True),
        ("resolved", Status.FIRING, False),
        ("any", Status.RESOLVED, True),
    ],
)
def test_status_filter(status: str, event_status: Status, expected: bool) -> None:
    """`status` takes firing, resolved or any."""
    rules = build(sms_rule(match={"status": status}))
    assert bool(matched(rules, alert(event_status))) is expected


def test_kind_and_source_lists() -> None:
    """`kind` and `source` take one value or a list of them."""
    rules = build(
        sms_rule("chat", match={"kind": ["command", "reply"], "source": ["slack", "c123"]}),
        sms_rule("am", match={"kind": "alert", "source": "am"}),
    )
    assert matched(rules, Event(EventKind.REPLY, "c123", text="ok")) == ["chat"]
    assert matched(rules, Event(EventKind.COMMAND, "slack", text="sms bob hi")) == ["chat"]
    assert matched(rules, Event(EventKind.COMMAND, "feishu", text="x")) == []
    assert matched(rules, alert()) == ["am"]
    assert matched(rules, alert(source="grafana")) == []


def test_first_match_wins_unless_continue() -> None:
    """Matching stops at the first rule that matches, unless that rule says continue."""
    stop = build(sms_rule("a"), sms_rule("b"), sms_rule("c"))
    assert matched(stop, alert()) == ["a"]
    go_on = build(sms_rule("a") | {"continue": True}, sms_rule("b"), sms_rule("c"))
    assert matched(go_on, alert()) == ["a", "b"]
    skip = build(sms_rule("a", match={"labels": {"x": "1"}}), sms_rule("b"), sms_rule("c"))
    assert matched(skip, alert()) == ["b"]


def test_explain_says_why_each_rule_did_not_match() -> None:
    """A dry run gets a reason per rule, or None where it matched."""
    rules = build(
        sms_rule("kind", match={"kind": "command"}),
        sms_rule("label", match={"matchers": ['team="db"']}),
        sms_rule("window", match={"when": {"days": "sat-sun"}}),
        sms_rule("all"),
    )
    assert rules.explain(alert(team="web"), NOW) == [
        ("kind", "kind is alert, not command"),
        ("label", "team=\"db\" does not hold (team is 'web')"),
        ("window", "outside its time window"),
        ("all", None),
    ]


# --- time windows ----------------------------------------------------------------------------


def at(
    year: int, month: int, day: int, hour: int, minute: int = 0, zone: Any = SHANGHAI
) -> datetime:
    """A fixed moment, given in `zone`, as UTC (as an input would stamp it)."""
    return datetime(year, month, day, hour, minute, tzinfo=zone).astimezone(UTC)


def test_weekdays() -> None:
    """`days: mon-fri` matches Wednesday and not Saturday, in the rules' zone."""
    rules = build(sms_rule(match={"when": {"days": "mon-fri"}}))
    assert matched(rules, alert(), at(2024, 5, 1, 12)) == ["r"]  # Wednesday
    assert matched(rules, alert(), at(2024, 5, 4, 12)) == []  # Saturday


def test_hours() -> None:
    """Hours are a half-open range: the start is in, the end is out."""
    rules = build(sms_rule(match={"when": {"hours": "09:00-18:00"}}))
    assert matched(rules, alert(), at(2024, 5, 1, 9, 0)) == ["r"]
    assert matched(rules, alert(), at(2024, 5, 1, 17, 59)) == ["r"]
    assert matched(rules, alert(), at(2024, 5, 1, 18, 0)) == []
    assert matched(rules, alert(), at(2024, 5, 1, 8, 59)) == []


def test_hours_wrapping_midnight_belong_to_the_start_day() -> None:
    """`fri` with `22:00-06:00` covers Friday night into Saturday morning, not Saturday night."""
    rules = build(sms_rule(match={"when": {"days": "fri", "hours": "22:00-06:00"}}))
    assert matched(rules, alert(), at(2024, 5, 3, 23, 0)) == ["r"]  # Friday 23:00
    assert matched(rules, alert(), at(2024, 5, 4, 2, 0)) == ["r"]  # Saturday 02:00
    assert matched(rules, alert(), at(2024, 5, 4, 6, 0)) == []  # Saturday 06:00
    assert matched(rules, alert(), at(2024, 5, 4, 23, 0)) == []  # Saturday 23:00
    assert matched(rules, alert(), at(2024, 5, 3, 2, 0)) == []  # Friday 02:00 is Thursday's night
    assert matched(rules, alert(), at(2024, 5, 3, 12, 0)) == []  # Friday noon


def test_window_zone_converts_now() -> None:
    """A window's own zone wins over the default; naive `now` is read as UTC."""
    rules = build(
        sms_rule(match={"when": {"hours": "09:00-10:00", "timezone": "Europe/London"}}),
    )
    # 09:30 in London (BST, UTC+1) is 16:30 in Shanghai.
    assert matched(rules, alert(), at(2024, 5, 1, 9, 30, ZoneInfo("Europe/London"))) == ["r"]
    assert matched(rules, alert(), at(2024, 5, 1, 9, 30)) == []
    default_zone = build(sms_rule(match={"when": {"hours": "09:00-10:00"}}))
    assert matched(default_zone, alert(), datetime(2024, 5, 1, 1, 30)) == ["r"]  # naive UTC


def test_window_day_follows_the_zone() -> None:
    """Monday 01:00 in Shanghai is still Sunday in UTC; the window's zone decides the day."""
    rules = build(sms_rule(match={"when": {"days": "mon"}}))
    monday_early = at(2024, 4, 29, 1, 0)
    assert monday_early.weekday() == 6
    assert matched(rules, alert(), monday_early) == ["r"]


# --- recipients ------------------------------------------------------------------------------


def test_recipients_from_contacts_groups_and_numbers() -> None:
    """Contacts, nested groups and bare numbers resolve to normalised numbers, each once."""
    rules = build(sms_rule(to=["everyone", "bob", "+86 151 0211 0090", "15102110090"]))
    [decision] = rules.evaluate(alert(), NOW)
    assert decision.sms is not None
    assert decision.sms.recipients == (
        Recipient("15102110086", "alice"),
        Recipient("15102110087", "Bob Li"),
        Recipient("15102110089", "151****0089"),
        Recipient("15102110088", "carol"),
        Recipient("15102110090", "151****0090"),
    )


def test_a_reply_never_goes_back_to_the_phone_it_came_from() -> None:
    """Alice replies; a rule forwarding replies to on-call texts Bob and the bare number, not
    Alice (her number in any written form). Other events reach everyone named."""
    rules = build(sms_rule(match={"kind": "reply"}, to=["oncall"]))
    for sender in ("15102110086", "+8615102110086"):
        reply = Event(EventKind.REPLY, "sms", text="on it", data={"mobile": sender})
        [decision] = rules.evaluate(reply, NOW)
        assert decision.sms is not None
        assert [r.name for r in decision.sms.recipients_for(reply)] == ["Bob Li", "151****0089"]
    stranger = Event(EventKind.REPLY, "sms", text="?", data={"mobile": "15102110099"})
    assert len(decision.sms.recipients_for(stranger)) == 3
    # An alert that happens to carry a mobile is not a reply: nobody is left out.
    assert len(decision.sms.recipients_for(alert())) == 3


def test_build_refuses_unresolvable_recipients() -> None:
    """Built without the reference check, an invalid number is still a RuleError, masked."""
    with pytest.raises(RuleError) as info:
        build(sms_rule(to=["alice", "1510211008"]))
    assert info.value.path == ("rules", 0, "sms", "to")
    assert str(info.value) == (
        "rules[0].sms.to: '1510211008' is not a mainland mobile number "
        "(11 digits starting with 1, optionally prefixed by +86 or 86)"
    )


def test_build_survives_group_cycles() -> None:
    """A cyclic group (reported by check_references) does not loop forever when resolving."""
    config = RulesConfig.model_validate(
        {
            "contacts": CONTACTS,
            "groups": {"a": ["alice", "b"], "b": ["a", "bob"]},
            "rules": [sms_rule(to=["a"])],
        }
    )
    rules = RuleSet.build(config.rules, config.contacts, config.groups, SHANGHAI)
    [decision] = rules.evaluate(alert(), NOW)
    assert decision.sms is not None
    assert [r.number for r in decision.sms.recipients] == ["15102110086", "15102110087"]


def test_build_refuses_bad_templates_and_duplicate_names() -> None:
    """Templates are compiled when building, and rule names must be unique."""
    config = RulesConfig.model_validate({"contacts": CONTACTS, "rules": [sms_rule()]})
    sms = config.rules[0].sms
    assert sms is not None
    broken = config.rules[0].model_copy(
        update={"sms": sms.model_copy(update={"template": "{% if %}"})}
    )
    with pytest.raises(RuleError) as info:
        RuleSet.build([broken], config.contacts, {}, SHANGHAI)
    assert info.value.path == ("rules", 0, "sms", "template")
    assert info.value.message.startswith("template error on line 1: ")
    with pytest.raises(RuleError) as info:
        RuleSet.build([config.rules[0], config.rules[0]], config.contacts, {}, SHANGHAI)
    assert str(info.value) == "rules[1].name: duplicate rule name 'r'"


# --- decisions and texts ---------------------------------------------------------------------


def test_sms_action_fields() -> None:
    """A decision carries the rule's SMS settings, with the documented defaults."""
    rules = build(sms_rule(cap_per_hour=5, group_wait="30s", group_by=["alertname", "env"]))
    [decision] = rules.evaluate(alert(), NOW)
    assert decision.sms is not None
    action = decision.sms
    assert (action.output, action.group_wait, action.group_by) == (
        "sms",
        timedelta(seconds=30),
        ("alertname", "env"),
    )
    assert (action.repeat_interval, action.send_resolved, action.cap_per_hour) == (
        timedelta(hours=4),
        True,
        5,
    )
    assert (action.retry_ambiguous, action.max_segments) == (True, 3)
    assert rules.sms_action("r") == action
    assert rules.sms_action("nope") is None


def test_send_resolved() -> None:
    """A resolved alert still matches, but sends only when send_resolved is on."""
    rules = build(sms_rule("quiet", send_resolved=False) | {"continue": True}, sms_rule("loud"))
    quiet, loud = rules.evaluate(alert(Status.RESOLVED), NOW)
    assert [d.sms is not None and d.sms.wants(d.event) for d in (quiet, loud)] == [False, True]
    [firing] = rules.evaluate(alert(), NOW)[:1]
    assert firing.sms is not None
    assert firing.sms.wants(firing.event)


def test_render_default_and_custom() -> None:
    """The default template and a custom one render this event's text."""
    rules = build(
        sms_rule("custom", template="{{ labels.alertname }}@{{ source }} {{ now|localtime }}")
        | {"continue": True},
        sms_rule("default"),
    )
    custom, default = rules.evaluate(alert(alertname="DiskFull", instance="db1"), NOW)
    assert custom.render() == "DiskFull@am 05-01 09:30"
    assert default.render() == "[FIRING] DiskFull db1"


def test_render_with_missing_labels_never_raises() -> None:
    """A template naming labels the event lacks renders them empty."""
    rules = build(sms_rule(template="[{{ labels.severity|upper }}] {{ labels.alertname }}!"))
    [decision] = rules.evaluate(alert(alertname="DiskFull"), NOW)
    assert decision.rendered().text == "[] DiskFull!"
    assert decision.rendered().error is None


def test_render_falls_back_on_runtime_errors() -> None:
    """A template failing at render time gives a plain text with status and alertname."""
    rules = build(sms_rule(template="{{ labels.alertname }} {{ 1 // labels.zero|int }}"))
    [decision] = rules.evaluate(alert(Status.RESOLVED, alertname="DiskFull"), NOW)
    result = decision.rendered()
    assert result.text == "[RESOLVED] DiskFull"
    assert result.error == "UndefinedError: 'dict object' has no attribute 'zero'"


def test_sms_text_is_cut_to_max_segments_with_the_signature() -> None:
    """The final SMS always fits max_segments once the signature is added."""
    rules = build(sms_rule(template="{{ text }}", max_segments=2), signature=SIGNATURE)
    event = Event(EventKind.ALERT, "am", text="x" * 500)
    [decision] = rules.evaluate(event, NOW)
    text = decision.render()
    assert segment_count(text, SIGNATURE) == 2
    assert text.endswith("…")
    assert len(text) == 134 - len(SIGNATURE)


def test_post_actions() -> None:
    """`post.to: conversation` means the event's own; the post text is not cut to segments."""
    rules = build(
        {
            "name": "back",
            "match": {"kind": "reply"},
            "post": {"to": "conversation", "template": "{{ text }}"},
            "continue": True,
        },
        {
            "name": "both",
            "match": {"kind": "reply"},
            "sms": {"to": ["alice"], "max_segments": 1},
            "post": {"to": "callback"},
        },
    )
    event = Event(
        EventKind.REPLY, "c123", text="y" * 200, conversation=Conversation("slack", "C1", "t1")
    )
    back, both = rules.evaluate(event, NOW)
    assert (back.sms, back.post) == (None, PostAction(None))
    assert back.render() == "y" * 200
    assert both.post == PostAction("callback")
    assert len(both.render()) == 70
    assert both.render("post") == "y" * 200
    with pytest.raises(ValueError, match="has no sms action"):
        back.render("sms")


def test_a_rule_naming_no_kind_never_takes_replies_or_reports() -> None:
    """Replies and reports carry their alert's labels: a label-only rule would page again on
    every report of its own SMS. Only a rule that names their kind takes them."""
    rules = build(sms_rule("page"), {**sms_rule("replies"), "match": {"kind": ["reply"]}})
    labels = {"alertname": "DiskFull"}
    for kind, expected in (
        (EventKind.ALERT, ["page"]),
        (EventKind.SYSTEM, ["page"]),
        (EventKind.REPLY, ["replies"]),
        (EventKind.DELIVERY, []),
        (EventKind.COMMAND, []),
    ):
        event = Event(kind, "am", labels=labels)
        assert [d.rule for d in rules.evaluate(event, NOW)] == expected, kind


def test_group_key_is_stable() -> None:
    """The group key is the rule and its group_by values, quoted like matchers."""
    rules = build(sms_rule("page", group_by=["alertname", "cluster"]))
    [decision] = rules.evaluate(alert(alertname='Disk "full"', env="prod"), NOW)
    assert decision.group_key() == 'page{alertname="Disk \\"full\\"",cluster=""}'
    [again] = rules.evaluate(alert(alertname='Disk "full"', env="dev"), NOW)
    assert again.group_key() == decision.group_key()


def test_render_group_default_shape() -> None:
    """Five alerts on five instances give exactly `[FIRING:5] HighLatency db1, db2 (+3)`."""
    rules = build(sms_rule("page", group_wait="30s"))
    events = [
        alert(alertname="HighLatency", instance=f"db{i}", fingerprint=f"f{i}") for i in range(1, 6)
    ]
    assert rules.render_group("page", events) == "[FIRING:5] HighLatency db1, db2 (+3)"


def test_render_group_falls_back_and_is_cut() -> None:
    """A failing group template falls back to status, count and group label; text fits segments."""
    rules = build(
        sms_rule("broken", group_template="{{ alerts[0].labels.x + 1 }}") | {"continue": True},
        sms_rule(
            "long", group_template="{% for a in alerts %}{{ a.text }}{% endfor %}", max_segments=1
        ),
        signature=SIGNATURE,
    )
    events = [
        alert(alertname="HighLatency", instance=f"db{i}", fingerprint=f"f{i}") for i in range(3)
    ]
    result = rules.render_group_result("broken", events, NOW)
    assert result.text == "[FIRING:3] HighLatency"
    assert result.error is not None
    long_events = [Event(EventKind.ALERT, "am", text=letter * 50) for letter in "xyz"]
    assert segment_count(rules.render_group("long", long_events), SIGNATURE) == 1
    with pytest.raises(ValueError, match="no rule 'nope'"):
        rules.render_group("nope", events)


def test_smallest_cap() -> None:
    """The lowest per-hour cap among the rules sending through an output."""
    rules = build(
        sms_rule("a", cap_per_hour=10),
        sms_rule("b", cap_per_hour=3),
        sms_rule("c"),
        sms_rule("d", output="other", cap_per_hour=1),
    )
    assert (rules.smallest_cap("sms"), rules.smallest_cap("other"), rules.smallest_cap("x")) == (
        3,
        1,
        None,
    )
    assert rules.names == ("a", "b", "c", "d")


rule_shapes = st.fixed_dictionaries(
    {
        # Mostly keyed on team, so the index is in use; sometimes not, so it is bypassed too.
        "labels": st.sampled_from(
            [{"team": "db"}, {"team": "web"}, {"team": "ops"}, {"team": ""}, {}]
        ),
        "matchers": st.lists(
            st.sampled_from(['team!="db"', 'team=~"w.*"', 'sev="page"', 'team="ops"']),
            max_size=2,
        ),
        "continue": st.booleans(),
    }
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(rule_shapes, min_size=8, max_size=14),
    st.dictionaries(
        st.sampled_from(["team", "sev"]), st.sampled_from(["", "db", "web", "ops", "page"])
    ),
)
def test_label_index_gives_the_same_decisions_as_trying_every_rule(
    shapes: list[dict[str, Any]], labels: dict[str, str]
) -> None:
    """With enough rules keyed on one label, the index changes the speed, never the result."""
    rules = [
        {
            "name": f"r{i}",
            "match": {"labels": shape["labels"], "matchers": shape["matchers"]},
            "sms": {"to": ["15102110086"]},
            "continue": shape["continue"],
        }
        for i, shape in enumerate(shapes)
    ]
    ruleset = build(*rules)
    event = alert(**labels)
    expected: list[str] = []
    for (name, why), shape in zip(ruleset.explain(event, NOW), shapes, strict=True):
        if why is None:
            expected.append(name)
            if not shape["continue"]:
                break
    assert matched(ruleset, event) == expected


def test_many_rules_on_one_label_are_indexed() -> None:
    """Ten rules each wanting a team are indexed by team; an event is tried on its own."""
    ruleset = build(*(sms_rule(f"t{n}", {"labels": {"team": f"t{n}"}}) for n in range(10)))
    assert ruleset._index_label == "team"
    assert [rule.name for rule in ruleset._candidates(alert(team="t7"))] == ["t7"]
    assert matched(ruleset, alert(team="t7")) == ["t7"]


def test_page_rule_decides_a_page_keyed_by_its_group() -> None:
    """A `page` rule's decision carries the policy; its group key (the incident's) uses the
    page's group_by, so alerts of one group share an incident and other groups do not."""
    rules = build(
        {
            "name": "critical",
            "match": {"labels": {"severity": "critical"}},
            "page": {"policy": "ops", "group_by": ["alertname", "cluster"]},
        }
    )
    (decision,) = rules.evaluate(alert(alertname="DiskFull", severity="critical", cluster="a"), NOW)
    assert decision.page == PageAction("ops", ("alertname", "cluster"))
    assert decision.sms is None
    assert decision.post is None
    assert decision.group_key() == 'critical{alertname="DiskFull",cluster="a"}'
    (other,) = rules.evaluate(alert(alertname="DiskFull", severity="critical", cluster="b"), NOW)
    assert other.group_key() != decision.group_key()
    assert rules.evaluate(alert(alertname="DiskFull", severity="warning"), NOW) == []
