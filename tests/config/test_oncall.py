"""The `oncall` section: what loads, what is refused and how the refusal reads, and its names."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from bridge.config import ConfigError, load_config_text
from bridge.config.models import Config
from bridge.config.oncall import HandoffTime, OncallConfig, check_references

ISSUE_EXAMPLE = """
contacts:
  alice: "15102110086"
  bob: "15102110087"
  carol: "15102110088"
groups:
  leads: [carol]
oncall:
  schedules:
    primary:
      timezone: Asia/Shanghai
      rotation: {members: [alice, bob], shift: 1w, handoff: "mon 10:00", start: 2026-12-07}
      overrides: [{who: carol, from: "2026-12-24 18:00", to: "2026-12-26 10:00"}]
  policies:
    ops:
      steps:
        - {notify: [schedule:primary], after: 5m}
        - {notify: [bob, group:leads], after: 5m}
      repeat: 2
      ack_timeout: 30m
      report_timeout: 3m
"""


def load(text: str) -> Config:
    return load_config_text(text, "smsbridge.yaml", Config, Path("."))


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(text)
    return [issue.render() for issue in info.value.issues]


def test_the_issue_example_loads() -> None:
    """The issue's example loads (with `after` on the first step: the wait between passes)."""
    oncall = load(ISSUE_EXAMPLE).oncall
    assert oncall is not None
    primary = oncall.schedules["primary"]
    assert primary.rotation is not None
    assert primary.rotation.shift == timedelta(weeks=1)
    assert primary.rotation.handoff == HandoffTime(0, 600)
    assert primary.rotation.start == date(2026, 12, 7)
    assert primary.overrides[0].from_ == datetime(2026, 12, 24, 18, 0)
    ops = oncall.policies["ops"]
    assert [step.after for step in ops.steps] == [timedelta(minutes=5)] * 2
    assert (ops.repeat, ops.ack_timeout, ops.report_timeout) == (
        2,
        timedelta(minutes=30),
        timedelta(minutes=3),
    )
    assert (oncall.help_per_day, oncall.critical, oncall.ack_max) == (
        3,
        ["critical"],
        timedelta(hours=24),
    )
    assert check_references(oncall, load(ISSUE_EXAMPLE).contacts, {"leads": ["carol"]}) == []


def test_without_an_oncall_section_there_is_none() -> None:
    assert load("{}").oncall is None


def test_dumps_back_to_loadable_config() -> None:
    """`model_dump` writes shift, handoff, dates and times the way they are read."""
    oncall = load(ISSUE_EXAMPLE).oncall
    assert oncall is not None
    dumped = oncall.model_dump(by_alias=True)
    rotation = dumped["schedules"]["primary"]["rotation"]
    assert (rotation["shift"], rotation["handoff"], rotation["start"]) == (
        "1w",
        "mon 10:00",
        "2026-12-07",
    )
    assert dumped["schedules"]["primary"]["overrides"][0]["from"] == "2026-12-24 18:00"
    assert OncallConfig.model_validate(dumped) == oncall


EXPECTED_PROBLEMS = [
    "smsbridge.yaml:5:17: oncall.schedules.primary.timezone: unknown time zone"
    " 'Asia/Shanghia'; did you mean 'Asia/Shanghai'?",
    "smsbridge.yaml:6:27: oncall.schedules.primary.rotation.members: expected at least 1"
    " item(s), got a list",
    "smsbridge.yaml:6:38: oncall.schedules.primary.rotation.shift: expected a shift length"
    " like '1w', '1d' or '12h', got '1fortnight'",
    "smsbridge.yaml:6:59: oncall.schedules.primary.rotation.handoff: unknown day 'someday'"
    " (days are mon, tue, wed, thu, fri, sat, sun)",
    "smsbridge.yaml:6:83: oncall.schedules.primary.rotation.start: cannot read this value as"
    " a date; quote it to use it as text",
    "smsbridge.yaml:7:38: oncall.schedules.primary.overrides[0].from: expected a local time"
    " like '2026-12-24 18:00', without an offset: the schedule's timezone applies, got"
    " '2026-12-24 18:00+08:00'",
    "smsbridge.yaml:7:68: oncall.schedules.primary.overrides[0].to: expected a local time"
    " like '2026-12-24 18:00', got 'soon'",
    "smsbridge.yaml:10:7: oncall.schedules.weekly.rotation: a handoff on a weekday ('mon"
    " 10:00') needs a shift of whole weeks; write the handoff as '10:00' for a 1d shift",
    "smsbridge.yaml:13:7: oncall.schedules.late.rotation: start 2026-12-09 is a wed, and the"
    " handoff is on mon; start on 2026-12-14, say",
    "smsbridge.yaml:14:5: oncall.schedules.empty: a schedule needs a rotation, layers, or both",
    "smsbridge.yaml:18:39: oncall.schedules.backwards.rotation.shift: expected a shift length"
    " like '1w', '1d' or '12h', of at least 1h, got '30m'",
    "smsbridge.yaml:18:53: oncall.schedules.backwards.rotation.handoff: expected a handoff"
    " time like 'mon 10:00' (weekly shifts) or '10:00' (00:00 to 23:59), got '25:00'",
    "smsbridge.yaml:19:19: oncall.schedules.backwards.overrides[0]: 'to' (2026-12-23 00:00)"
    " must come after 'from'",
    "smsbridge.yaml:22:42: oncall.policies.ops.steps[1].notify[0]: expected a contact,"
    " group:NAME or schedule:NAME, not 'team:', got 'team:x'",
    "smsbridge.yaml:23:5: oncall.policies.loop: with repeat, the first step needs 'after':"
    " the wait from the last step to the next pass (the first pass still pages at once)",
    "smsbridge.yaml:27:14: oncall.policies.none.steps: expected at least 1 item(s), got a list",
    "smsbridge.yaml:28:15: oncall.policies.none.repeat: expected a value of at least 0, got -1",
    "smsbridge.yaml:29:17: oncall.help_per_day: expected a value of at least 0, got -1",
    "smsbridge.yaml:30:13: oncall.critical: expected at least 1 item(s), got a list",
    "smsbridge.yaml:31:12: oncall.ack_max: expected a duration greater than zero, got '0s'",
    "smsbridge.yaml:32:23: oncall.alertmanager.url: expected an http:// or https:// URL",
    "smsbridge.yaml:32:34: oncall.alertmanager.auth: set exactly one of bearer (e.g."
    " ${AM_TOKEN}) or basic",
    "smsbridge.yaml:33:3: oncall.extra: unknown key (allowed: ack_max, alertmanager,"
    " critical, help_per_day, policies, schedules)",
]


def test_every_problem_at_once_with_its_line() -> None:
    text = """
oncall:
  schedules:
    primary:
      timezone: Asia/Shanghia
      rotation: {members: [], shift: 1fortnight, handoff: "someday 10:00", start: 2026-13-01}
      overrides: [{who: carol, from: "2026-12-24 18:00+08:00", to: "soon"}]
    weekly:
      timezone: UTC
      rotation: {members: [a], shift: 1d, handoff: "mon 10:00", start: 2026-12-07}
    late:
      timezone: UTC
      rotation: {members: [a], shift: 1w, handoff: "mon 10:00", start: 2026-12-09}
    empty:
      timezone: UTC
    backwards:
      timezone: UTC
      rotation: {members: [a], shift: 30m, handoff: "25:00", start: 2026-12-07}
      overrides: [{who: a, from: "2026-12-24", to: "2026-12-23"}]
  policies:
    ops:
      steps: [{notify: [bob]}, {notify: ["team:x"], after: 5m}]
    loop:
      steps: [{notify: [bob]}, {notify: [carol], after: 5m}]
      repeat: 2
    none:
      steps: []
      repeat: -1
  help_per_day: -1
  critical: []
  ack_max: 0s
  alertmanager: {url: "ftp://x", auth: {}}
  extra: 1
"""
    assert problems(text) == EXPECTED_PROBLEMS


def test_references_name_what_is_defined() -> None:
    text = (
        ISSUE_EXAMPLE.replace("[alice, bob]", "[alice, bobby]")
        .replace("who: carol", "who: karol")
        .replace("schedule:primary", "schedule:primery")
        .replace("group:leads", "group:lead")
    )
    config = load(text)
    assert config.oncall is not None
    found = check_references(config.oncall, config.contacts, config.groups)
    assert found == [
        (
            ("oncall", "schedules", "primary", "rotation", "members", 1),
            "unknown contact or group 'bobby'; did you mean 'bob'? (defined: alice, bob, carol,"
            " leads)",
        ),
        (
            ("oncall", "schedules", "primary", "overrides", 0, "who"),
            "unknown contact or group 'karol'; did you mean 'carol'? (defined: alice, bob, carol,"
            " leads)",
        ),
        (
            ("oncall", "policies", "ops", "steps", 0, "notify", 0),
            "unknown schedule 'primery'; did you mean 'primary'? (defined: primary)",
        ),
        (
            ("oncall", "policies", "ops", "steps", 1, "notify", 1),
            "unknown group 'lead'; did you mean 'leads'? (defined: leads)",
        ),
    ]


def test_single_names_read_as_lists() -> None:
    """`notify: bob` and `critical: page` read as one-item lists."""
    oncall = OncallConfig.model_validate(
        {"policies": {"p": {"steps": [{"notify": "bob"}]}}, "critical": "page"}
    )
    assert oncall.policies["p"].steps[0].notify == ["bob"]
    assert oncall.critical == ["page"]
