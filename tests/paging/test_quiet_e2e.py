"""Quiet hours end to end in a real daemon on a set clock: pages that may wait are held through
alice's night and released as one digest SMS; a critical page goes through; the escalation of an
incident whose only target is asleep waits for her morning."""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bridge.runtime.daemon import Daemon
from bridge.runtime.loops import fire_paging_timers
from bridge.runtime.settings import load_settings
from bridge.testing import daemon_config, post_json, quick_simulator_settings
from tests.paging.test_e2e import sent_to, until

A, B = "15102110086", "15102110087"
SHANGHAI = ZoneInfo("Asia/Shanghai")
NIGHT = datetime(2026, 12, 2, 23, 30, tzinfo=SHANGHAI).timestamp()
MORNING = datetime(2026, 12, 3, 7, 0, tzinfo=SHANGHAI).timestamp()

CONFIG = f"""
polling: {{replies: 1h, reports: 1h, balance: 1h}}
dispatch: {{backoff_max: 50ms}}
inputs:
  am: {{type: alertmanager, allow_unauthenticated: true}}
contacts:
  alice:
    number: "{A}"
    name: Alice
    quiet: {{hours: "23:00-07:00", timezone: Asia/Shanghai}}
  bob: {{number: "{B}", name: Bob}}
oncall:
  policies:
    ops:
      steps:
        - {{notify: [alice]}}
        - {{notify: [bob], after: 5m}}
      report_timeout: 10m
rules:
  - name: paged
    match: {{kind: alert}}
    page: {{policy: ops}}
"""


class Clock:
    """The real clock moved to a chosen instant, so the daemon's own timing still runs."""

    def __init__(self, at: float) -> None:
        self.offset = at - time.time()

    def __call__(self) -> float:
        return time.time() + self.offset

    def move_to(self, at: float) -> None:
        self.offset = at - time.time()


def notification(alertname: str, severity: str) -> dict[str, Any]:
    labels = {"alertname": alertname, "severity": severity}
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{alertname}"}}',
        "status": "firing",
        "receiver": "sms",
        "groupLabels": {"alertname": alertname},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://am",
        "truncatedAlerts": 0,
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": {},
                "startsAt": "2026-12-02T15:00:00Z",
                "endsAt": "",
                "fingerprint": f"{abs(hash(alertname)):016x}",
            }
        ],
    }


async def test_quiet_hours_hold_pages_and_release_one_digest(tmp_path: Path) -> None:
    """Two warnings at 23:30 are held (no SMS, counted), a critical one goes out at once; at
    07:00 one digest names both held pages, and bob's step waits past alice's morning."""
    clock = Clock(NIGHT)
    settings = load_settings(daemon_config(CONFIG, tmp_path))
    daemon = Daemon(settings, simulator_settings=quick_simulator_settings(), clock=clock)
    await daemon.start()
    try:
        assert daemon.simulator is not None
        state = daemon.simulator.state
        for name in ("DiskFull", "CpuHot"):
            assert (await post_json(daemon, "/hooks/am", notification(name, "warning")))[0] == 200
        assert (await post_json(daemon, "/hooks/am", notification("Down", "critical")))[0] == 200
        await daemon.processor.drain()
        await state.wait_for(lambda s: len(s.messages) >= 1)
        assert sent_to(state) == [(A, "[#3] Down - reply 3a to ack, 3c to close, 3e to escalate")]
        sample = daemon.metrics.registry.get_sample_value
        assert sample("smsbridge_pages_held_total") == 2

        def step_due(conn: sqlite3.Connection) -> dict[str, float]:
            rows = conn.execute("SELECT key, due_at FROM timers WHERE kind = 'incident.step'")
            return {row["key"]: row["due_at"] for row in rows}

        due = await daemon.store.read(step_due)
        # Held incidents page bob 5 min after alice's morning; the critical one 5 min from now.
        assert due["1"] >= MORNING + 300
        assert due["2"] >= MORNING + 300
        assert due["3"] < NIGHT + 400

        clock.move_to(MORNING + 1)
        await fire_paging_timers(daemon.pipeline, daemon.store, clock, daemon.log)
        await state.wait_for(lambda s: len(s.messages) >= 3)
        # The critical incident's next step came due overnight and pages bob; alice gets one SMS.
        assert sorted(sent_to(state)[1:]) == [
            (A, "smsbridge held 2 pages overnight: #1 DiskFull (1a), #2 CpuHot (2a)"),
            (B, "[#3] Down - reply 1a to ack, 1c to close, 1e to escalate"),
        ]
        # Bob's step of the held incidents is still ahead: alice has her five minutes.
        assert min(due["1"], due["2"]) > clock()
        assert len(state.messages) == 3
        held = await daemon.store.read(
            lambda conn: conn.execute(
                "SELECT COUNT(*) AS n FROM timers WHERE kind = 'quiet_release'"
            ).fetchone()["n"]
        )
        assert held == 0

        def all_sent(conn: sqlite3.Connection) -> bool:
            return conn.execute("SELECT 1 FROM jobs WHERE ref = ''").fetchone() is None

        await until(lambda: daemon.store.read(all_sent))
        await daemon.poller.poll_reports()
        await daemon.processor.drain()

        def statuses(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute("SELECT status FROM incident_pages WHERE incident_id IN (1, 2)")
            return [row["status"] for row in rows]

        # The digest's one delivery report settles both pages it carried.
        assert await daemon.store.read(statuses) == ["delivered", "delivered"]
    finally:
        await daemon.stop()
