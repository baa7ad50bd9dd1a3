"""/metrics on a working daemon: promtool accepts the scrape and the alert rules use real names."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import generate_latest

from bridge.events import Event, EventKind
from bridge.metrics import CARRIER_CODES, CARRIER_LABELS, Metrics, carrier_code_label
from bridge.plugins.c123.models import Action
from bridge.plugins.c123.simulator import Fault, FaultKind, SimulatorSettings
from bridge.runtime.daemon import Daemon
from bridge.runtime.settings import load_settings
from bridge.testing import CapturingOutput, DaemonFactory

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "prometheus" / "smsbridge-alerts.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="needs promtool (Debian: prometheus)")


@pytest.fixture
async def scrape(tmp_path: Path) -> str:
    """A scrape after alerts, a failed call, a reply, a report and a balance poll."""
    config = tmp_path / "config.yaml"
    config.write_text(f"""
server: {{listen: "127.0.0.1:0"}}
store: {{path: {tmp_path / "outbox.sqlite3"}}}
polling: {{replies: 1h, reports: 1h, balance: 1h}}
dispatch: {{backoff_max: 10ms}}
contacts: {{alice: "15102110086"}}
rules:
  - name: page
    match: {{kind: alert}}
    sms: {{to: [alice], cap_per_hour: 2}}
""")
    daemon = Daemon(
        load_settings(config), simulator_settings=SimulatorSettings(report_delay=0, rate_limit=None)
    )
    await daemon.start()
    sim = daemon.simulator
    assert sim is not None
    sim.state.add_fault(Fault(FaultKind.HTTP500, action=Action.SEND_ONCE))
    await daemon.processor.run_events(
        [
            Event(
                kind=EventKind.ALERT, source="am", labels={"alertname": f"A{n}"}, fingerprint=str(n)
            )
            for n in range(3)
        ]
    )
    await sim.state.wait_for(lambda s: len(s.messages) >= 1 and not s.faults)
    sim.state.inject_reply("15102110086", "ok")
    await daemon.poller.poll_replies()
    await daemon.processor.drain()
    await daemon.poller.poll_reports()
    await daemon.processor.drain()
    await daemon.poller.poll_balance()
    await daemon.processor.drain()
    async with aiohttp.ClientSession() as http, http.get(daemon.url + "/metrics") as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await response.text()
    await daemon.stop()
    return text


@needs_promtool
def test_promtool_accepts_the_scrape(scrape: str) -> None:
    """promtool check metrics finds no problem with a real scrape."""
    assert PROMTOOL is not None
    done = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=scrape, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == ""


@needs_promtool
def test_promtool_accepts_the_alert_rules() -> None:
    """The shipped alerting rules load in Prometheus."""
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 7 rules found" in done.stdout


def test_the_figures_a_person_needs(scrape: str) -> None:
    """Events, matches, outcomes, suppressions, gateway timings, reports, replies, balance."""
    for series in (
        'smsbridge_events_received_total{input="am",kind="alert"} 3.0',
        'smsbridge_rule_matches_total{rule="page"} 3.0',
        'smsbridge_messages_total{outcome="sent",output="sms"}',
        'smsbridge_sms_suppressed_total{reason="cap",rule="page"} 2.0',
        'smsbridge_gateway_request_duration_seconds_count{action="sendOnce",result="http_500"} 1.0',
        'smsbridge_delivery_reports_total{carrier_code="DELIVRD"}',
        "smsbridge_replies_received_total 1.0",
        "smsbridge_gateway_balance_yuan",
        'smsbridge_outbox_jobs{state="sent"} 1.0',
        "smsbridge_outbox_oldest_pending_age_seconds 0.0",
        "smsbridge_config_last_reload_successful 1.0",
    ):
        assert series in scrape, series


def test_alert_rules_name_only_exported_metrics(scrape: str) -> None:
    """Every smsbridge_* series an alert rule uses is one the daemon exports."""
    exported = set(re.findall(r"^(smsbridge_[a-z_]+)", scrape, re.M))
    used = set(re.findall(r"\b(smsbridge_[a-z_]+)", RULES.read_text()))
    assert used
    assert used <= exported, used - exported


@given(st.none() | st.text() | st.sampled_from(CARRIER_CODES))
def test_any_carrier_code_maps_to_a_bounded_label(code: str | None) -> None:
    """Whatever the gateway answers, the label is one of 13 values; documented codes keep theirs."""
    label = carrier_code_label(code)
    assert label in CARRIER_LABELS
    if code in CARRIER_CODES:
        assert label == code


@pytest.mark.parametrize(
    ("code", "label"),
    [
        ("UNDELIV", "UNDELIV"),
        (" delivrd ", "DELIVRD"),
        ("", "none"),
        (None, "none"),
        ("MK:0001", "other"),
        ("\x1b[31mX", "other"),
    ],
)
def test_carrier_code_label(code: str | None, label: str) -> None:
    assert carrier_code_label(code) == label


def test_every_carrier_label_is_on_the_page_from_the_start() -> None:
    """The bounded set is exported at zero before any report, and nothing else is."""
    page = generate_latest(Metrics().registry).decode()
    found = re.findall(
        r'^smsbridge_delivery_reports_total\{carrier_code="([^"]+)"\} 0\.0$', page, re.M
    )
    assert sorted(found) == sorted(CARRIER_LABELS)
    assert len(CARRIER_LABELS) == 13


async def test_a_forwarded_reply_is_counted_once(
    smsbridge_daemon: DaemonFactory, capture_output: CapturingOutput
) -> None:
    """A reply that no rule takes goes to conversations.default: one reply, one count."""
    daemon = await smsbridge_daemon("""
outputs: {chat: {type: capture}}
conversations: {default: {output: chat}}
polling: {replies: 1h, reports: 1h, balance: 1h}
""")
    assert daemon.simulator is not None
    daemon.simulator.state.inject_reply("15102110086", "ok")
    await daemon.poller.poll_replies()
    await capture_output.wait_for(1)
    registry = daemon.metrics.registry
    assert registry.get_sample_value("smsbridge_replies_received_total") == 1.0
    assert registry.get_sample_value("smsbridge_replies_forwarded_total") == 1.0
