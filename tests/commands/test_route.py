"""`smsbridge route`: the dry run names matching rules, texts, costs and recipients' fates."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bridge.cli import main
from bridge.events import Event, EventKind, Intent
from bridge.outbox import jobs as outbox
from bridge.store import Connection, Dialect, Store

CONFIG = """
store: {{path: {store}}}
contacts:
  alice: "15102110086"
  bob: {{number: "15102110087", name: Bob}}
groups:
  oncall: [alice, bob]
rules:
  - name: db-team
    match: {{labels: {{team: db}}}}
    sms: {{to: [bob]}}
  - name: page-critical
    match:
      kind: alert
      labels: {{severity: critical}}
      when: {{days: mon-fri, hours: "09:00-18:00"}}
    sms: {{to: [oncall], cap_per_hour: 3}}
    continue: true
  - name: everything
    match: {{kind: alert}}
    sms: {{to: [alice], group_wait: 30s}}
"""
AT = datetime(2026, 11, 25, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))  # a Wednesday morning
EVENT = {
    "kind": "alert",
    "source": "am",
    "labels": {"alertname": "DiskFull", "severity": "critical", "instance": "db1"},
    "data": {"annotations": {"summary": "disk 97% full"}},
    "fingerprint": "abc",
}


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(store=tmp_path / "outbox.sqlite3"))
    event = tmp_path / "event.json"
    event.write_text(json.dumps(EVENT))
    return config, event


def route(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:  # type: ignore[type-arg]
    assert main(["route", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_weekday_match_with_texts_and_costs(
    capsys: pytest.CaptureFixture[str], files: tuple[Path, Path]
) -> None:
    """On a weekday morning the paging rule matches, continues, and the catch-all groups."""
    config, event = files
    report = route(capsys, "-c", str(config), str(event), "--at", "2026-11-25T10:00")
    matched = [r["rule"] for r in report["rules"] if r["matched"]]
    assert matched == ["page-critical", "everything"]
    page, everything = report["decisions"]
    assert page["sms"]["text"] == "[FIRING] DiskFull db1: disk 97% full"
    assert (page["sms"]["segments"], page["sms"]["cost_per_number"]) == (1, "0.10")
    assert [r["number"] for r in page["sms"]["recipients"]] == ["151****0086", "151****0087"]
    assert everything["sms"]["recipients"][0]["outcome"].startswith("grouped")
    why = {r["rule"]: r["why_not"] for r in report["rules"]}
    assert "team" in why["db-team"]


def test_weekend_window_excludes_the_paging_rule(
    capsys: pytest.CaptureFixture[str], files: tuple[Path, Path]
) -> None:
    """Outside the rule's window the rule does not match, and says why."""
    config, event = files
    report = route(capsys, "-c", str(config), str(event), "--at", "2026-11-29T10:00")
    assert [d["rule"] for d in report["decisions"]] == ["everything"]
    why = {r["rule"]: r["why_not"] for r in report["rules"]}
    assert why["page-critical"]


def test_caps_are_read_from_the_outbox(
    capsys: pytest.CaptureFixture[str],
    files: tuple[Path, Path],
    tmp_path: Path,
    backend: tuple[Dialect, str],
    store_factory: Callable[[], Store],
) -> None:
    """With the hour's cap used up in the outbox, the dry run says the SMS would be held (on
    each backend)."""
    config, event = files
    store = store_factory()
    where = f'url: "{backend[1]}"' if backend[1] else f"path: {store.where}"
    config.write_text(config.read_text().replace(f"path: {tmp_path / 'outbox.sqlite3'}", where))

    async def fill() -> None:
        await store.open()
        alert = Event(kind=EventKind.ALERT, source="am")

        def work(conn: Connection) -> None:
            for _ in range(2):
                intent = Intent("sms", "15102110086", "x", "page-critical", alert)
                outbox.add_job(conn, intent, None, AT.timestamp() - 60)

        await store.write(work)
        await store.close()

    asyncio.run(fill())
    report = route(capsys, "-c", str(config), str(event), "--at", AT.isoformat())
    page = next(d for d in report["decisions"] if d["rule"] == "page-critical")
    outcomes = {r["name"]: r["outcome"] for r in page["sms"]["recipients"]}
    assert outcomes["alice"].startswith("held back: cap 3/h reached (2 in the last hour)")
    assert outcomes["Bob"] == "would send"


def test_text_output_and_bad_event(
    capsys: pytest.CaptureFixture[str], files: tuple[Path, Path], tmp_path: Path
) -> None:
    """The terminal form lists rules and recipients; an unreadable event is a usage error."""
    config, event = files
    assert main(["route", "-c", str(config), str(event), "--at", "2026-11-25T10:00"]) == 0
    out = capsys.readouterr().out
    assert "page-critical: matches" in out
    assert "to Bob (151****0087): would send" in out
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["route", "-c", str(config), str(bad)]) == 2
    assert "cannot read the event" in capsys.readouterr().err


# Nothing a terminal acts on may be printed raw (a newline only between lines).
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def test_labels_with_escape_codes_are_printed_escaped(
    capsys: pytest.CaptureFixture[str], files: tuple[Path, Path], tmp_path: Path
) -> None:
    """An event's labels can hold terminal escape codes: the listing shows them escaped, the
    JSON keeps their value, and neither writes one raw; the SMS shown is the cleaned one."""
    config, _ = files
    labels = {
        "alertname": "\x1b[31mDiskFull\x1b]0;owned\x07",
        "severity": "critical",
        "instance": "db1\x9b2J\u202e\nrule fake: matches",
    }
    event = tmp_path / "hostile.json"
    event.write_text(json.dumps({**EVENT, "labels": labels}))
    assert main(["route", "-c", str(config), str(event), "--at", "2026-11-25T10:00"]) == 0
    out = capsys.readouterr().out
    assert not RAW_CONTROL.search(out)
    assert "alertname=\\x1b[31mDiskFull\\x1b]0;owned\\x07" in out
    assert "instance=db1\\x9b2J\\u202e\\nrule fake: matches" in out
    assert not any(line.startswith("rule fake") for line in out.splitlines())
    assert "'[FIRING] DiskFull db1 rule fake: matches: disk 97% full'" in out
    assert main(["route", "-c", str(config), str(event), "--at", "2026-11-25T10:00", "--json"]) == 0
    out = capsys.readouterr().out
    assert not RAW_CONTROL.search(out)
    assert json.loads(out)["event"]["labels"] == labels


def test_a_rule_shadowed_by_an_earlier_one_says_which_wins_and_why(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A later rule that matches but is never reached is not shown as just "matches"."""
    config = tmp_path / "config.yaml"
    config.write_text(
        f"""
store: {{path: {tmp_path / "outbox.sqlite3"}}}
rules:
  - name: first
    match: {{kind: alert}}
    sms: {{to: ["15102110086"]}}
  - name: other-team
    match: {{labels: {{team: web}}}}
    sms: {{to: ["15102110087"]}}
  - name: catch-all
    sms: {{to: ["15102110088"]}}
"""
    )
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"kind": "alert", "labels": {"alertname": "X", "team": "db"}}))
    report = route(capsys, "-c", str(config), str(event))
    assert [(r["rule"], r["matched"], r["shadowed_by"]) for r in report["rules"]] == [
        ("first", True, None),
        ("other-team", False, None),
        ("catch-all", True, "first"),
    ]
    assert [d["rule"] for d in report["decisions"]] == ["first"]
    assert main(["route", "-c", str(config), str(event)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2:5] == [
        "  first: matches and wins: no `continue: true`, so later rules are not tried",
        "  other-team: no match (team=\"web\" does not hold (team is 'db'))",
        "  catch-all: matches, but is not reached: rule 'first' wins, it matches first and has "
        "no `continue: true`",
    ]
