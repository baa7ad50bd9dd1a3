"""The Grafana dashboard: importable JSON whose every query names only metrics a real daemon's
/metrics exposes, and parses as PromQL."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from bridge.events import Event, EventKind
from bridge.testing import DaemonFactory

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "prometheus" / "smsbridge-dashboard.json"
PROMTOOL = shutil.which("promtool")

# The series names each metric type exposes; a name in a query must be one of them.
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
# Label lists of aggregations and vector matching: `by (le)` names labels, not metrics.
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"(?<![\w:$])([A-Za-z_:][\w:]*)\s*[{\[)]")


def metric_names(query: str) -> set[str]:
    """The metric names a PromQL query reads: identifiers followed by `{`, `[` or `)`, once its
    strings and label lists are taken out (functions are followed by `(`, never by these)."""
    bare = _LABEL_LIST.sub(" ", _STRING.sub('""', query))
    return set(_NAME.findall(bare))


def exposed(families: Iterator[Metric]) -> set[str]:
    """Every series name a scrape offers: sample names, and those each family's type implies
    (a labelled counter nothing has counted yet still is a name a query may use)."""
    names: set[str] = set()
    for family in families:
        names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
        names.update(sample.name for sample in family.samples)
    return names


def queries(dashboard: dict[str, Any]) -> dict[str, list[str]]:
    """Each panel's title and the expressions of its targets."""
    found: dict[str, list[str]] = {}
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            exprs = [target["expr"] for target in inner.get("targets", [])]
            if exprs:
                found[inner["title"]] = exprs
    return found


@pytest.fixture
async def scrape(smsbridge_daemon: DaemonFactory) -> str:
    """A real daemon's /metrics after alerts were sent and their reports and a balance came."""
    daemon = await smsbridge_daemon("""
polling: {replies: 1h, reports: 1h, balance: 1h}
contacts: {alice: "15102110086"}
rules:
  - name: page
    match: {kind: alert}
    sms: {to: [alice]}
""")
    assert daemon.simulator is not None
    assert daemon.poller is not None
    await daemon.processor.run_events(
        [Event(kind=EventKind.ALERT, source="am", labels={"alertname": "A"}, fingerprint="a")]
    )
    await daemon.simulator.state.wait_for(lambda state: len(state.messages) >= 1)
    await daemon.poller.poll_reports()
    await daemon.poller.poll_balance()
    await daemon.processor.drain()
    async with aiohttp.ClientSession() as http, http.get(daemon.url + "/metrics") as response:
        return await response.text()


def test_the_dashboard_is_importable_json() -> None:
    """What Grafana's import reads: a datasource input, ids unique, every panel placed."""
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "smsbridge"
    (source,) = dashboard["__inputs"]
    assert (source["name"], source["pluginId"]) == ("DS_PROMETHEUS", "prometheus")
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}"
    titles = " ".join(queries(dashboard)).lower()
    for topic in ("delivery", "cost", "balance", "queue", "acknowledge", "latency", "restarts"):
        assert topic in titles, topic


def test_every_query_names_only_metrics_the_daemon_exposes(scrape: str) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    offered = exposed(text_string_to_metric_families(scrape))
    assert "smsbridge_messages_total" in offered
    assert "smsbridge_incident_time_to_acknowledge_seconds_bucket" in offered
    used: set[str] = set()
    for title, exprs in queries(dashboard).items():
        for expr in exprs:
            names = metric_names(expr)
            assert names, (title, expr)
            assert names <= offered, (title, names - offered)
            used |= names
    variable = dashboard["templating"]["list"][0]["definition"]
    assert re.findall(r"label_values\((\w+),", variable)[0] in offered
    # Each part of the brief has a panel: messages, cost, queue, incidents, gateway, tasks.
    for name in (
        "smsbridge_messages_total",
        "smsbridge_delivery_reports_total",
        "smsbridge_sms_cost_yuan_total",
        "smsbridge_gateway_balance_yuan",
        "smsbridge_outbox_jobs",
        "smsbridge_outbox_oldest_pending_age_seconds",
        "smsbridge_incident_changes_total",
        "smsbridge_incident_time_to_acknowledge_seconds_bucket",
        "smsbridge_gateway_request_duration_seconds_bucket",
        "smsbridge_gateway_request_duration_seconds_count",
        "smsbridge_task_restarts_total",
    ):
        assert name in used, name


def test_metric_names_reads_what_promql_names() -> None:
    query = (
        'histogram_quantile(0.9, sum by (le, action) (rate(a_bucket{x="b)", y=~"c[d]"}[5m])))'
        " / on (instance) group_left (z) sum(rate(b_total[$__rate_interval]))"
        " - time() + c{} + max(d)"
    )
    assert metric_names(query) == {"a_bucket", "b_total", "c", "d"}


@given(st.from_regex(r"[a-z_][a-z0-9_]{0,20}", fullmatch=True), st.sampled_from(["{", "[", ")"]))
def test_a_name_before_a_selector_is_found(name: str, after: str) -> None:
    """A metric name is found before any selector, and a label list never yields one."""
    assert metric_names(f"sum by ({name}) (m{after}") == {"m"}
    assert metric_names(f"max({name}{after}") == {name}


@pytest.mark.skipif(PROMTOOL is None, reason="needs promtool (Debian: prometheus)")
def test_every_query_parses_as_promql(tmp_path: Path) -> None:
    """promtool loads every query as a recording rule, Grafana's variables filled in."""
    assert PROMTOOL is not None
    dashboard = json.loads(DASHBOARD.read_text())
    rules = []
    for number, expr in enumerate(e for exprs in queries(dashboard).values() for e in exprs):
        concrete = expr.replace("$__rate_interval", "1m").replace("$instance", ".*")
        rules.append({"record": f"dashboard:query{number}", "expr": concrete})
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout
