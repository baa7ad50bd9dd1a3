"""Paging end to end in a real daemon and the embedded simulator: an alert pages alice, nobody
answers so bob is paged, bob's reply acknowledges, the alert resolves the incident; a failed
delivery report pages the next step at once."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bridge.plugins.c123.simulator import GatewayState
from bridge.runtime.daemon import Daemon
from bridge.runtime.health import refresh_gauges
from bridge.runtime.settings import load_settings
from bridge.testing import DaemonFactory, daemon_config, post_json, quick_simulator_settings

A, B = "15102110086", "15102110087"
_fingerprints = itertools.count(1)


def config(bob_after: str) -> str:
    return f"""
polling: {{replies: 1h, reports: 1h, balance: 1h}}
dispatch: {{backoff_max: 50ms}}
inputs:
  am: {{type: alertmanager, allow_unauthenticated: true}}
contacts:
  alice: {{number: "{A}", name: Alice}}
  bob: {{number: "{B}", name: Bob}}
oncall:
  policies:
    ops:
      steps:
        - {{notify: [alice]}}
        - {{notify: [bob], after: {bob_after}}}
      report_timeout: 1h
rules:
  - name: critical
    match: {{kind: alert, labels: {{severity: critical}}}}
    page: {{policy: ops}}
"""


def notification(status: str, fingerprint: str) -> dict[str, Any]:
    """An Alertmanager v4 notification of one critical DiskFull alert."""
    labels = {"alertname": "DiskFull", "severity": "critical"}
    return {
        "version": "4",
        "groupKey": '{}:{alertname="DiskFull"}',
        "status": status,
        "receiver": "sms",
        "groupLabels": {"alertname": "DiskFull"},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://am",
        "truncatedAlerts": 0,
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "annotations": {},
                "startsAt": "2026-11-25T00:00:00Z",
                "endsAt": "2026-11-25T01:00:00Z" if status == "resolved" else "",
                "fingerprint": fingerprint,
            }
        ],
    }


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:  # noqa: ASYNC109
    """Poll a store condition with a deadline (the store has no change event to await)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def sent_to(state: GatewayState) -> list[tuple[str, str]]:
    return [(message.mobile, message.content) for message in state.messages]


def has(count: int) -> Callable[[GatewayState], bool]:
    return lambda state: len(state.messages) >= count


async def incident_state(daemon: Daemon) -> str:
    def read(conn: sqlite3.Connection) -> str:
        return str(conn.execute("SELECT state FROM incidents").fetchone()["state"])

    return await daemon.store.read(read)


async def step_timers(daemon: Daemon) -> int:
    def read(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT COUNT(*) AS n FROM timers WHERE kind = 'incident.step'")
        return int(row.fetchone()["n"])

    return await daemon.store.read(read)


@pytest.mark.parametrize("answer", ["1a", "确认"])
async def test_alert_pages_escalates_and_a_reply_acknowledges(
    smsbridge_daemon: DaemonFactory, answer: str
) -> None:
    """alice paged at once; nobody answers, so bob 1 s later; bob's `1a` (or 确认) stops paging
    and tells alice; the alert resolving resolves the incident."""
    daemon = await smsbridge_daemon(config("1s"))
    assert daemon.simulator is not None
    state = daemon.simulator.state
    fingerprint = f"{next(_fingerprints):016x}"
    assert (await post_json(daemon, "/hooks/am", notification("firing", fingerprint)))[0] == 200
    await state.wait_for(has(1))
    (first,) = sent_to(state)
    assert first == (A, "[#1] DiskFull - reply 1a to ack, 1c to close, 1e to escalate")
    await state.wait_for(has(2))  # no answer: the next step, on its timer
    assert sent_to(state)[1] == (B, "[#1] DiskFull - reply 1a to ack, 1c to close, 1e to escalate")

    state.inject_reply(B, answer)
    await daemon.poller.poll_replies()
    await daemon.processor.drain()
    await state.wait_for(has(4))
    told = sorted(sent_to(state)[2:])
    assert told == [
        (A, "Bob acknowledged #1 DiskFull"),
        (B, "acknowledged #1 DiskFull"),
    ]
    assert await incident_state(daemon) == "acknowledged"
    assert await step_timers(daemon) == 0  # nothing left to page anyone
    sample = daemon.metrics.registry.get_sample_value
    assert sample("smsbridge_pages_total", {"policy": "ops"}) == 2
    assert sample("smsbridge_incident_changes_total", {"change": "acknowledged"}) == 1
    assert sample("smsbridge_incident_time_to_acknowledge_seconds_count") == 1
    assert 1 <= (sample("smsbridge_incident_time_to_acknowledge_seconds_sum") or 0) < 30
    await refresh_gauges(daemon)
    assert sample("smsbridge_incidents", {"state": "acknowledged"}) == 1
    assert sample("smsbridge_incidents", {"state": "triggered"}) == 0

    assert (await post_json(daemon, "/hooks/am", notification("resolved", fingerprint)))[0] == 200
    await daemon.processor.drain()
    assert await incident_state(daemon) == "resolved"
    assert len(state.messages) == 4
    await refresh_gauges(daemon)
    assert sample("smsbridge_incidents", {"state": "acknowledged"}) == 0


async def test_undelivered_page_fails_over_at_the_next_report_poll(
    smsbridge_daemon: DaemonFactory,
) -> None:
    """UNDELIV for alice's page: bob is paged at the next report poll, not an hour later."""
    daemon = await smsbridge_daemon(config("1h"))
    assert daemon.simulator is not None
    state = daemon.simulator.state
    state.set_carrier_codes({A: "UNDELIV"})
    fingerprint = f"{next(_fingerprints):016x}"
    assert (await post_json(daemon, "/hooks/am", notification("firing", fingerprint)))[0] == 200
    await state.wait_for(has(1))
    assert sent_to(state)[0][0] == A

    def sent(conn: sqlite3.Connection) -> bool:
        return conn.execute("SELECT 1 FROM jobs WHERE ref != ''").fetchone() is not None

    await until(lambda: daemon.store.read(sent))  # the worker recorded the gateway's msgid
    await daemon.poller.poll_reports()
    await daemon.processor.drain()
    await state.wait_for(has(2))
    assert sent_to(state)[1] == (B, "[#1] DiskFull - reply 1a to ack, 1c to close, 1e to escalate")
    assert await incident_state(daemon) == "triggered"
    cause = {"cause": "failed_delivery"}
    assert daemon.metrics.registry.get_sample_value("smsbridge_escalations_total", cause) == 1


@pytest.mark.parametrize("still_pages", [True, False], ids=["same-config", "oncall-removed"])
async def test_a_restart_mid_escalation_still_pages_the_next_step_once(
    tmp_path: Path, still_pages: bool
) -> None:
    """alice paged, the daemon stopped; the next daemon on the same store pages bob when the
    step comes due (its durable timer), and only once. So it does on a config that no longer
    pages (paging is then loaded only for the timer): the incident keeps its stored steps."""
    path = daemon_config(config("2s"), tmp_path)
    first = Daemon(load_settings(path), simulator_settings=quick_simulator_settings())
    await first.start()
    try:
        assert first.simulator is not None
        fingerprint = f"{next(_fingerprints):016x}"
        assert (await post_json(first, "/hooks/am", notification("firing", fingerprint)))[0] == 200
        await first.simulator.state.wait_for(has(1))
        assert sent_to(first.simulator.state)[0][0] == A
    finally:
        await first.stop()
    if not still_pages:
        path = daemon_config(config("2s").split("oncall:")[0] + "rules: []\n", tmp_path)
    second = Daemon(load_settings(path), simulator_settings=quick_simulator_settings())
    await second.start()
    try:
        assert (second.pipeline.paging is not None) == still_pages
        assert second.simulator is not None
        await second.simulator.state.wait_for(has(1))
        assert sent_to(second.simulator.state) == [
            (B, "[#1] DiskFull - reply 1a to ack, 1c to close, 1e to escalate")
        ]

        def pages(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute("SELECT name FROM incident_pages ORDER BY id").fetchall()
            return [row["name"] for row in rows]

        assert await second.store.read(pages) == ["Alice", "Bob"]
    finally:
        await second.stop()


async def test_a_page_says_what_the_alert_says(smsbridge_daemon: DaemonFactory) -> None:
    """The alert's summary annotation is in the page, on one line and cut to stay short."""
    daemon = await smsbridge_daemon(config("1h"))
    assert daemon.simulator is not None
    body = notification("firing", f"{next(_fingerprints):016x}")
    body["alerts"][0]["annotations"] = {"summary": "disk / is\n97% full on db1 " + "x" * 80}
    assert (await post_json(daemon, "/hooks/am", body))[0] == 200
    await daemon.simulator.state.wait_for(has(1))
    ((_, text),) = sent_to(daemon.simulator.state)
    said = "disk / is 97% full on db1 " + "x" * 33 + "…"
    assert text == f"[#1] DiskFull: {said} - reply 1a to ack, 1c to close, 1e to escalate"
