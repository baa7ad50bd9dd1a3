"""`smsbridge route`: the dry run names matching rules, texts, costs and recipients' fates."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bridge.cli import main
from bridge.events import Event, EventKind, Intent
from bridge.outbox import jobs as outbox
from bridge.store.sqlite import Store

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
    capsys: pytest.CaptureFixture[str], files: tuple[Path, Path], tmp_path: Path
) -> None:
    """With the hour's cap used up in the outbox, the dry run says the SMS would be held."""
    config, event = files

    async def fill() -> None:
        store = Store(tmp_path / "outbox.sqlite3")
        await store.open()
        alert = Event(kind=EventKind.ALERT, source="am")

        def work(conn: sqlite3.Connection) -> None:
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
