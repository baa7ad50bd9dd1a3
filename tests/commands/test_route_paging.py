"""`smsbridge route` for paging rules: the escalation timeline if nobody acknowledges, and the
summary a grouping rule would send."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.cli import main
from bridge.events import Event
from bridge.intake import holding
from bridge.outbox import jobs as outbox
from bridge.store import SqliteStore

CONFIG = """
store: {{path: {store}}}
contacts:
  alice: "15102110086"
  bob: "15102110087"
  carol: "15102110088"
  dave: "15102110089"
groups:
  leads: [carol, dave]
oncall:
  schedules:
    primary:
      timezone: Asia/Shanghai
      rotation: {{members: [alice, bob], shift: 1d, handoff: "10:00", start: 2026-12-07}}
    nights:
      timezone: Asia/Shanghai
      rotation:
        {{members: [carol], shift: 1d, handoff: "00:00", start: 2026-12-07, hours: "22:00-06:00"}}
  policies:
    ops:
      steps:
        - {{notify: [schedule:nights, schedule:primary], after: 10m}}
        - {{notify: [bob, group:leads], after: 5m}}
      repeat: {repeat}
rules:
  - name: critical
    match: {{kind: alert, labels: {{severity: critical}}}}
    page: {{policy: ops}}
    continue: true
  - name: grouped
    match: {{kind: alert}}
    sms: {{to: [alice], group_wait: 30s, group_by: [alertname]}}
"""
EVENT: dict[str, Any] = {
    "kind": "alert",
    "source": "am",
    "labels": {"alertname": "DiskFull", "severity": "critical", "instance": "db1"},
    "data": {"annotations": {"summary": "disk 97% full"}},
    "fingerprint": "abc",
}
# Numbers each step can reach: one on call in each of two schedules; bob, carol and dave.
STEP_TARGETS = (2, 3)


def write(tmp_path: Path, repeat: int = 1, event: dict[str, Any] = EVENT) -> tuple[str, str]:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(store=tmp_path / "outbox.sqlite3", repeat=repeat))
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    return str(config), str(path)


def route(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main(["route", *argv, "--json"]) == 0
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    return report


def test_the_timeline_asks_schedules_at_each_step_and_repeats(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """At 09:58 alice is on call; the repeat pass at 10:13 pages bob, who took over at 10:00.
    The night schedule has nobody by day: a warning on each pass, and the step still pages."""
    config, event = write(tmp_path)
    report = route(capsys, "-c", config, event, "--at", "2026-12-08T09:58")
    page = next(d for d in report["decisions"] if d["rule"] == "critical")["page"]
    assert page["incident"] == 'critical{alertname="DiskFull"}'
    assert (page["steps"], page["repeat"], page["pages"]) == (2, 1, 8)
    timeline = [
        (
            line["at"],
            line["pass"],
            line["step"],
            line.get("nobody_on_call") or [(t["name"], t["via"]) for t in line["targets"]],
        )
        for line in page["timeline"]
    ]
    leads = [("bob", "bob"), ("carol", "group:leads"), ("dave", "group:leads")]
    assert timeline == [
        ("2026-12-08T09:58:00+08:00", 1, 1, "nights"),
        ("2026-12-08T09:58:00+08:00", 1, 1, [("alice", "schedule:primary")]),
        ("2026-12-08T10:03:00+08:00", 1, 2, leads),
        ("2026-12-08T10:13:00+08:00", 2, 1, "nights"),
        ("2026-12-08T10:13:00+08:00", 2, 1, [("bob", "schedule:primary")]),
        ("2026-12-08T10:18:00+08:00", 2, 2, leads),
    ]
    assert page["timeline"][2]["targets"][0]["number"] == "151****0087"
    assert page["timeline"][2]["offset_seconds"] == 300

    assert main(["route", "-c", config, event, "--at", "2026-12-08T09:58"]) == 0
    out = capsys.readouterr().out.splitlines()
    start = out.index(
        '  page through policy ops, incident critical{alertname="DiskFull"}: 2 step(s), repeat 1; '
        "if nobody acknowledges, 8 page(s):"
    )
    assert out[start + 1 : start + 4] == [
        "    +0m Tue 2026-12-08 09:58 +0800 pass 1 step 1: warning: nobody on call in schedule "
        "nights",
        "    +0m Tue 2026-12-08 09:58 +0800 pass 1 step 1: alice (151****0086, schedule:primary)",
        "    +5m Tue 2026-12-08 10:03 +0800 pass 1 step 2: bob (151****0087, bob), "
        "carol (151****0088, group:leads), dave (151****0089, group:leads)",
    ]
    assert out[start + 5].startswith("    +15m Tue 2026-12-08 10:13 +0800 pass 2 step 1: bob")


def test_a_resolution_pages_nobody(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config, event = write(tmp_path, event={**EVENT, "status": "resolved"})
    report = route(capsys, "-c", config, event, "--at", "2026-12-08T09:58")
    page = next(d for d in report["decisions"] if d["rule"] == "critical")["page"]
    assert (page["resolves"], page["timeline"]) == (True, [])
    assert main(["route", "-c", config, event, "--at", "2026-12-08T09:58"]) == 0
    assert (
        'incident critical{alertname="DiskFull"}: resolves the incident if open; nothing is paged'
        in (capsys.readouterr().out)
    )


PAGE_LINE = re.compile(r"^    \+\d+m(\d\ds)? .* pass \d+ step \d+: (?!warning)(.*)$")


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    at=st.datetimes(
        min_value=datetime(2026, 12, 1),
        max_value=datetime(2027, 2, 1),
        timezones=st.just(UTC),
    ),
    repeat=st.integers(min_value=0, max_value=3),
)
def test_pages_printed_stay_within_the_policy_bound(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, at: datetime, repeat: int
) -> None:
    """Whenever the alert comes (the rotation before its start, nights by day or night), the
    pages printed never exceed (targets summed over the steps) x (repeat + 1)."""
    config, event = write(tmp_path, repeat=repeat)
    assert main(["route", "-c", config, event, "--at", at.isoformat()]) == 0
    lines = capsys.readouterr().out.splitlines()
    printed = sum(
        len(found.group(2).split("), ")) for found in map(PAGE_LINE.match, lines) if found
    )
    assert 0 < printed <= sum(STEP_TARGETS) * (repeat + 1)
    report = route(capsys, "-c", config, event, "--at", at.isoformat())
    page = next(d for d in report["decisions"] if d["rule"] == "critical")["page"]
    assert page["pages"] == printed
    passes = {line["pass"] for line in page["timeline"]}
    assert passes == set(range(1, repeat + 2))


def test_a_grouping_rule_shows_the_summary_with_the_alerts_already_waiting(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A rule with group_wait sends the group's summary, not the alert's own text; alerts of
    the group already waiting in the outbox are in it."""
    config, event = write(tmp_path)
    at = "2026-12-08T09:58:00+08:00"
    report = route(capsys, "-c", config, event, "--at", at)
    sms = next(d for d in report["decisions"] if d["rule"] == "grouped")["sms"]
    assert sms["grouped"] is True
    alone = sms["text"]
    assert alone.startswith("[FIRING:1] DiskFull"), alone

    async def fill() -> None:
        store = SqliteStore(tmp_path / "outbox.sqlite3")
        await store.open()
        labels = {**EVENT["labels"], "instance": "db2"}
        other = Event.from_json({**EVENT, "labels": labels, "fingerprint": "def"})

        def work(conn: sqlite3.Connection) -> None:
            event_id = outbox.add_event(conn, other)
            now = datetime.fromisoformat(at).timestamp() - 10
            key = 'grouped{alertname="DiskFull"}'
            holding.add_group_member(conn, "grouped", key, "sms", "15102110086", event_id, now, 30)

        await store.write(work)
        await store.close()

    asyncio.run(fill())
    report = route(capsys, "-c", config, event, "--at", at)
    sms = next(d for d in report["decisions"] if d["rule"] == "grouped")["sms"]
    assert sms["text"].startswith("[FIRING:2] DiskFull"), sms["text"]
    assert main(["route", "-c", config, event, "--at", at]) == 0
    assert "  sms via sms (the group's summary): '[FIRING:2] DiskFull" in capsys.readouterr().out


QUIET = """
contacts:
  alice:
    number: "15102110086"
    name: Alice
    quiet: {{hours: "23:00-07:00", timezone: Asia/Shanghai}}
  bob: {{number: "15102110087", name: Bob}}
oncall:
  policies:
    ops:
      steps:
        - {{notify: [alice]}}
        - {{notify: [bob], after: 5m}}
rules:
  - name: paged
    match: {{kind: alert}}
    page: {{policy: ops}}
"""


@pytest.mark.parametrize(
    ("severity", "bob_at", "held"),
    [
        ("warning", "2026-12-08T07:05:00+08:00", True),
        ("critical", "2026-12-08T02:05:00+08:00", False),
    ],
)
def test_the_timeline_applies_quiet_hours(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, severity: str, bob_at: str, held: bool
) -> None:
    """At 02:00 alice is in quiet hours: a warning is held for her until 07:00 and bob, the
    next step, waits for that too; a critical page goes through and bob comes at 02:05."""
    config = tmp_path / "config.yaml"
    config.write_text(QUIET.format())
    event = tmp_path / "event.json"
    event.write_text(
        json.dumps({**EVENT, "labels": {"alertname": "DiskFull", "severity": severity}})
    )
    at = "2026-12-08T02:00:00+08:00"
    report = route(capsys, "-c", str(config), str(event), "--at", at)
    first, second = report["decisions"][0]["page"]["timeline"]
    (alice,) = first["targets"]
    assert ("held_until" in alice) is held
    if held:
        assert alice["held_until"] == "2026-12-08T07:00:00+08:00"
        assert first["postpones_seconds"] == 5 * 3600
    assert second["at"] == bob_at
    assert "held_until" not in second["targets"][0]

    assert main(["route", "-c", str(config), str(event), "--at", at]) == 0
    text = capsys.readouterr().out
    assert ("held by quiet hours, released in one digest at Tue 2026-12-08 07:00" in text) is held
    assert ("the next step waits 5:00:00" in text) is held
