"""Tests for the contacts, groups and rules config models and their cross-reference checks."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest

from bridge.config import ConfigError, load_config_text
from bridge.events import EventKind
from bridge.rules.config import (
    ALL_DAYS,
    ContactConfig,
    RuleConfig,
    RulesConfig,
    check_references,
)
from bridge.rules.matchers import HourRange, MatchOp

OUTPUTS = ("callback", "sms")
INPUTS = ("am", "slack")

EXAMPLE = """\
contacts:
  alice: "+8615102110086"
  bob: {number: "15102110087", name: "Bob Li"}
groups:
  oncall: [alice, bob, "15102110088"]
  everyone: [oncall, "15102110089"]
rules:
  - name: page-critical
    match:
      kind: alert
      source: am
      status: firing
      labels: {severity: critical}
      matchers: ['team!="db"', 'instance=~"db[0-9]+"', 'env!~"dev|test"']
      when:
        days: [mon, tue, wed, thu, fri]
        hours: "22:00-06:00"
        timezone: Asia/Shanghai
    sms:
      to: [alice, oncall, "15102110090"]
      template: "[{{ status|upper }}] {{ labels.alertname }} on {{ labels.instance }}"
      max_segments: 2
      group_wait: 30s
      cap_per_hour: 10
    post:
      to: callback
    continue: true
  - name: replies
    match: {kind: [reply, command], source: [slack]}
    post: {to: conversation}
"""


def load(text: str) -> RulesConfig:
    """Load `text` as config.yaml."""
    return load_config_text(dedent(text), "config.yaml", RulesConfig, Path("/etc"), environ={})


def report(text: str) -> list[str]:
    """The report lines for a config that must fail to load, without the summary line."""
    with pytest.raises(ConfigError) as info:
        load(text)
    return str(info.value).splitlines()[1:]


def rules_config(**sections: Any) -> RulesConfig:
    """A RulesConfig from Python data."""
    return RulesConfig.model_validate(sections)


def problems(config: RulesConfig) -> list[tuple[tuple[str | int, ...], str]]:
    """The cross-reference problems against the test outputs and inputs."""
    return check_references(config.contacts, config.groups, config.rules, OUTPUTS, INPUTS)


# --- the models ----------------------------------------------------------------------------


def test_the_documented_example_loads_with_no_problems() -> None:
    """The example from the issue validates, and every reference in it resolves."""
    config = load(EXAMPLE)
    assert problems(config) == []
    rule = config.rules[0]
    assert rule.match.kind == frozenset({EventKind.ALERT})
    assert rule.match.sources() == frozenset({"am"})
    assert [m.op for m in rule.match.matchers] == [
        MatchOp.NOT_EQUAL,
        MatchOp.REGEX,
        MatchOp.NOT_REGEX,
    ]
    assert rule.match.when is not None
    assert rule.match.when.days == frozenset(range(5))
    assert rule.match.when.hours == HourRange(22 * 60, 6 * 60)
    assert rule.sms is not None
    assert (rule.sms.output, rule.sms.group_wait, rule.sms.repeat_interval) == (
        "sms",
        timedelta(seconds=30),
        timedelta(hours=4),
    )
    assert rule.continue_ is True
    assert config.rules[1].match.kind == frozenset({EventKind.REPLY, EventKind.COMMAND})


def test_contacts_are_normalised_and_may_be_bare_numbers() -> None:
    """A contact is a number or {number, name}; numbers are kept in their 11-digit form."""
    config = load(
        "contacts:\n  alice: '+86 151-0211-0086'\n  bob: {number: 15102110087, name: Bob}\n"
    )
    assert config.contacts == {
        "alice": ContactConfig(number="15102110086"),
        "bob": ContactConfig(number="15102110087", name="Bob"),
    }


def test_unquoted_numbers_and_label_values_are_text() -> None:
    """YAML integers in `to`, groups and label values are taken as the text they were written as."""
    config = load(
        """\
        groups: {ops: [15102110088]}
        rules:
          - name: r
            match: {labels: {code: 500}}
            sms: {to: [15102110090]}
        """
    )
    assert config.groups == {"ops": ["15102110088"]}
    assert config.rules[0].match.labels == {"code": "500"}
    assert config.rules[0].sms is not None
    assert config.rules[0].sms.to == ["15102110090"]


def test_window_defaults() -> None:
    """A window without days is every day; without a zone it uses the rules' default."""
    config = load(
        "rules:\n  - name: r\n    match: {when: {hours: '09:00-24:00'}}\n    post: {to: x}\n"
    )
    when = config.rules[0].match.when
    assert when is not None
    assert (when.days, when.hours, when.timezone) == (ALL_DAYS, HourRange(540, 0), None)


def test_model_errors_are_positioned_and_named() -> None:
    """Bad kinds, matchers, windows, templates and missing actions are config errors at load."""
    lines = report(
        """\
        contacts:
          alice: "1510211008"
        rules:
          - name: a
            match:
              kind: [alert, alrt]
              matchers: ['team!="db', 'instance=~"db[0-9"', 'x']
              when: {days: [mon, funday], hours: "25:00-06:00"}
            sms:
              to: [alice]
              max_segments: 11
              template: |
                [{{ status }}]
                {{ labels.x }
          - name: b
            sms: {to: [alice], group_template: "{{ alerts|nope }}"}
          - name: c
        """
    )
    assert lines == [
        "config.yaml:2:10: contacts.alice.number: '1510211008' is not a mainland mobile number "
        "(11 digits starting with 1, optionally prefixed by +86 or 86)",
        "config.yaml:6:13: rules[0].match.kind: unknown kind 'alrt'; did you mean 'alert'? "
        "(allowed: alert, command, reply, delivery, system)",
        "config.yaml:7:18: rules[0].match.matchers[0]: bad matcher 'team!=\"db': "
        "missing closing double quote",
        "config.yaml:7:31: rules[0].match.matchers[1]: bad matcher 'instance=~\"db[0-9\"': "
        "invalid regular expression 'db[0-9': unterminated character set at position 2",
        "config.yaml:7:53: rules[0].match.matchers[2]: bad matcher 'x': expected name, "
        'an operator (=, !=, =~, !~) and a value, as in severity="critical"',
        "config.yaml:8:20: rules[0].match.when.days: unknown day 'funday' "
        "(days are mon, tue, wed, thu, fri, sat, sun; ranges are written like mon-fri)",
        "config.yaml:8:42: rules[0].match.when.hours: expected hours like '09:00-18:00' "
        "(00:00 to 24:00), got '25:00-06:00'",
        "config.yaml:11:21: rules[0].sms.max_segments: expected a value of at most 10, got 11",
        "config.yaml:12:17: rules[0].sms.template: template error on line 2: unexpected '}'",
        "config.yaml:16:40: rules[1].sms.group_template: template error on line 1: "
        "No filter named 'nope'.",
        "config.yaml:17:5: rules[2]: a rule needs an action: sms, post or page (or several)",
    ]


def test_hours_that_start_and_end_together_are_an_error() -> None:
    """`09:00-09:00` is ambiguous, so it is refused with a hint."""
    lines = report(
        "rules:\n  - name: r\n    match: {when: {hours: '09:00-09:00'}}\n    post: {to: x}\n"
    )
    assert lines == [
        "config.yaml:3:27: rules[0].match.when.hours: expected hours with an end different from "
        "the start (leave out hours for all day), got '09:00-09:00'"
    ]


def test_sms_needs_someone_to_send_to() -> None:
    """An sms action with an empty `to` is an error."""
    lines = report("rules:\n  - name: r\n    sms: {to: []}\n")
    assert lines == ["config.yaml:3:15: rules[0].sms.to: expected at least 1 item(s), got a list"]


# --- cross-references ----------------------------------------------------------------------


def rule(name: str = "r", **fields: Any) -> dict[str, Any]:
    """A rule mapping with an sms to alice unless fields say otherwise."""
    return {"name": name, **({"sms": {"to": ["alice"]}} | fields)}


CONTACTS = {"alice": "15102110086", "bob": "15102110087"}


def test_unknown_contact_suggests_a_name() -> None:
    """An unknown name in `to` says which names exist and the closest one."""
    config = rules_config(
        contacts=CONTACTS, groups={"oncall": ["alice"]}, rules=[rule(sms={"to": ["alcie", "zed"]})]
    )
    assert problems(config) == [
        (
            ("rules", 0, "sms", "to", 0),
            "unknown contact or group 'alcie'; did you mean 'alice'? (defined: alice, bob, oncall)",
        ),
        (
            ("rules", 0, "sms", "to", 1),
            "unknown contact or group 'zed' (defined: alice, bob, oncall)",
        ),
    ]


def test_unknown_name_with_nothing_defined() -> None:
    """With no contacts or groups the message says so."""
    config = rules_config(rules=[rule(sms={"to": ["alice"]})])
    assert problems(config) == [
        (
            ("rules", 0, "sms", "to", 0),
            "unknown contact or group 'alice' (no contacts or groups are defined)",
        )
    ]


def test_invalid_numbers_are_masked() -> None:
    """A bad number in `to` or in a group reports InvalidNumberError's masked message."""
    config = rules_config(
        contacts=CONTACTS,
        groups={"ops": ["alice", "+86 151021100866"]},
        rules=[rule(sms={"to": ["ops", "1510211"]})],
    )
    assert problems(config) == [
        (
            ("groups", "ops", 1),
            "'+86 151021100866' is not a mainland mobile number "
            "(11 digits starting with 1, optionally prefixed by +86 or 86)",
        ),
        (
            ("rules", 0, "sms", "to", 1),
            "'1510211' is not a mainland mobile number "
            "(11 digits starting with 1, optionally prefixed by +86 or 86)",
        ),
    ]


def test_unknown_group_member() -> None:
    """A group member that is no contact, group or number is reported where it is listed."""
    config = rules_config(contacts=CONTACTS, groups={"ops": ["alice", "bobb"]}, rules=[])
    assert problems(config) == [
        (
            ("groups", "ops", 1),
            "unknown contact or group 'bobb'; did you mean 'bob'? (defined: alice, bob, ops)",
        )
    ]


def test_group_cycles() -> None:
    """A group that contains itself, directly or through others, is reported once per cycle."""
    config = rules_config(
        contacts=CONTACTS,
        groups={"a": ["alice", "b"], "b": ["c"], "c": ["a"], "self": ["self"]},
        rules=[rule(sms={"to": ["a"]})],
    )
    assert problems(config) == [
        (("groups", "c", 0), "groups form a cycle: a -> b -> c -> a"),
        (("groups", "self", 0), "groups form a cycle: self -> self"),
    ]


def test_contact_and_group_names_clash() -> None:
    """A name cannot be both a contact and a group."""
    config = rules_config(contacts=CONTACTS, groups={"alice": ["bob"]}, rules=[])
    assert problems(config) == [(("groups", "alice"), "'alice' is both a contact and a group")]


def test_empty_groups_send_to_nobody() -> None:
    """A `to` that reaches no number at all is an error."""
    config = rules_config(
        contacts=CONTACTS, groups={"nobody": []}, rules=[rule(sms={"to": ["nobody"]})]
    )
    assert problems(config) == [(("rules", 0, "sms", "to"), "these groups hold no numbers")]


def test_unknown_outputs() -> None:
    """`sms.output` and `post.to` must name an output; `post.to` may also be `conversation`."""
    config = rules_config(
        contacts=CONTACTS,
        rules=[
            rule("a", sms={"to": ["alice"], "output": "smss"}),
            rule("b", sms=None, post={"to": "callbak"}),
            rule("c", sms=None, post={"to": "convrsation"}),
            rule("d", sms=None, post={"to": "conversation"}),
        ],
    )
    assert problems(config) == [
        (
            ("rules", 0, "sms", "output"),
            "unknown output 'smss'; did you mean 'sms'? (defined: callback, sms)",
        ),
        (
            ("rules", 1, "post", "to"),
            "unknown output 'callbak'; did you mean 'callback'? "
            "(defined: callback, sms; or 'conversation')",
        ),
        (
            ("rules", 2, "post", "to"),
            "unknown output 'convrsation'; did you mean 'conversation'? "
            "(defined: callback, sms; or 'conversation')",
        ),
    ]


def test_unknown_inputs() -> None:
    """`match.source` must name inputs, alone or in a list; the path points at the item."""
    config = rules_config(
        contacts=CONTACTS,
        rules=[rule("a", match={"source": "amm"}), rule("b", match={"source": ["am", "slak"]})],
    )
    assert problems(config) == [
        (
            ("rules", 0, "match", "source"),
            "unknown input 'amm'; did you mean 'am'? (defined: am, slack)",
        ),
        (
            ("rules", 1, "match", "source", 1),
            "unknown input 'slak'; did you mean 'slack'? (defined: am, slack)",
        ),
    ]


def test_no_outputs_defined() -> None:
    """With no outputs at all the message says so."""
    config = rules_config(contacts=CONTACTS, rules=[rule()])
    assert check_references(config.contacts, {}, config.rules, (), ()) == [
        (("rules", 0, "sms", "output"), "unknown output 'sms' (no outputs are defined)")
    ]


def test_duplicate_rule_names() -> None:
    """Rule names are unique; the repeat says where the name was first used."""
    config = rules_config(contacts=CONTACTS, rules=[rule("page"), rule("other"), rule("page")])
    assert problems(config) == [
        (("rules", 2, "name"), "duplicate rule name 'page' (first used by rules[0])")
    ]


def test_rule_alias_and_strictness() -> None:
    """`continue` is the key for continue_, and unknown keys in a rule are errors."""
    assert RuleConfig.model_validate(rule(**{"continue": True})).continue_ is True
    lines = report("rules:\n  - name: r\n    post: {to: x}\n    contine: true\n")
    assert lines == [
        "config.yaml:4:5: rules[0].contine: unknown key; did you mean 'continue'? "
        "(allowed: continue, match, name, page, post, sms)"
    ]


def test_dump_gives_the_written_forms() -> None:
    """Parsed values (days, hours, kinds, matchers) dump back as the text they are written as."""
    config = load(EXAMPLE)
    match = config.model_dump(mode="json", by_alias=True)["rules"][0]["match"]
    assert match["kind"] == ["alert"]
    assert match["matchers"] == ['team!="db"', 'instance=~"db[0-9]+"', 'env!~"dev|test"']
    assert match["when"] == {
        "days": ["mon", "tue", "wed", "thu", "fri"],
        "hours": "22:00-06:00",
        "timezone": "Asia/Shanghai",
    }
    assert config.model_dump()["rules"][1]["match"]["source"] == ["slack"]


def test_page_names_a_known_policy() -> None:
    """`page: {policy: NAME}` is checked against the oncall policies; an unknown one is refused
    with its path and the closest name; without the policies known, it is not checked."""
    config = rules_config(contacts=CONTACTS, rules=[{"name": "p", "page": {"policy": "opps"}}])
    found = check_references(config.contacts, {}, config.rules, OUTPUTS, INPUTS, {"ops", "db"})
    assert found == [
        (
            ("rules", 0, "page", "policy"),
            "unknown policy 'opps'; did you mean 'ops'? (defined: db, ops)",
        )
    ]
    assert check_references(config.contacts, {}, config.rules, OUTPUTS, INPUTS, {"opps"}) == []
    assert check_references(config.contacts, {}, config.rules, OUTPUTS, INPUTS) == []


def test_page_alone_is_an_action() -> None:
    """A rule with only `page` is valid; its incidents are grouped by alertname by default."""
    config = RuleConfig.model_validate({"name": "p", "page": {"policy": "ops"}})
    assert config.page is not None
    assert (config.page.policy, config.page.group_by) == ("ops", ["alertname"])
