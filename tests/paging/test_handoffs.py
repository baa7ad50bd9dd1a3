"""Handoff SMS (once per handoff, on a durable timer) and the warning when a schedule member's
last page was not delivered: in the store, in `smsbridge oncall`, in logs and metrics."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import bridge.paging.handoffs as handoffs
from bridge.paging import ScheduleConfig
from bridge.runtime.health import refresh_gauges
from bridge.runtime.loops import fire_paging_timers
from bridge.store import Dialect, timers
from bridge.testing import DaemonFactory, post_json
from tests.paging.desk import DIRECTORY, NUMBER, T0, Desk
from tests.paging.test_e2e import A, has, notification, until

BIN = Path(sys.executable).parent
KIND = handoffs.HANDOFF_TIMER


def schedule(handoff_sms: bool = True) -> ScheduleConfig:
    """alice and bob by the day, handing off at 10:00 Shanghai time (02:00 UTC)."""
    return ScheduleConfig.model_validate(
        {
            "timezone": "Asia/Shanghai",
            "rotation": {
                "members": ["alice", "bob"],
                "shift": "1d",
                "handoff": "10:00",
                "start": "2026-11-01",
            },
            "handoff_sms": handoff_sms,
        }
    )


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


HANDOFF = utc("2026-12-01T02:00")  # 10:00 in Shanghai
NEXT = utc("2026-12-02T02:00")


def due(conn: sqlite3.Connection) -> list[tuple[str, float]]:
    rows = conn.execute("SELECT key, due_at FROM timers WHERE kind = ?", (handoffs.HANDOFF_TIMER,))
    return [(row["key"], row["due_at"]) for row in rows]


async def fire(desk: Desk, now: float, schedules: dict[str, ScheduleConfig]) -> list[str]:
    """Fire due handoff timers as the paging loop does; the texts' recipients and texts."""

    def effect(conn: sqlite3.Connection, timer: timers.Timer) -> list[str]:
        told = handoffs.on_timer(conn, timer, schedules, DIRECTORY, now)
        return [f"{item.recipient.name}: {item.text}" for item in told]

    fired = await desk.write(lambda conn: timers.fire_due(conn, now, 10, effect))
    return [text for texts in fired for text in texts]


async def test_each_handoff_is_told_once_to_the_incoming_person(desk: Desk) -> None:
    schedules = {"primary": schedule()}
    await desk.call(handoffs.ensure_timers, schedules, HANDOFF - 3600)
    assert await desk.read(due) == [("primary", HANDOFF)]
    assert await fire(desk, HANDOFF - 1, schedules) == []  # not yet
    told = await fire(desk, HANDOFF + 5, schedules)
    # Dec 1 is shift 30 from Nov 1: alice's (even shifts are alice's).
    assert told == [
        "Alice: smsbridge: you are on call for primary from Tue 2026-12-01 10:00 CST "
        "until Wed 2026-12-02 10:00 CST"
    ]
    assert await desk.read(due) == [("primary", NEXT)]  # the next handoff, on the same timer
    # A restart sets the timers again: nothing moves, nothing is told twice.
    await desk.call(handoffs.ensure_timers, schedules, HANDOFF + 10)
    assert await desk.read(due) == [("primary", NEXT)]
    assert await fire(desk, HANDOFF + 20, schedules) == []
    assert [t.split(":")[0] for t in await fire(desk, NEXT, schedules)] == ["Bob"]


async def test_a_handoff_missed_while_down_is_told_on_return_unless_long_past(desk: Desk) -> None:
    schedules = {"primary": schedule()}
    await desk.call(handoffs.ensure_timers, schedules, HANDOFF - 60)
    # Down over the handoff; back 10 minutes later: the overdue timer stays and fires.
    await desk.call(handoffs.ensure_timers, schedules, HANDOFF + 600)
    assert await desk.read(due) == [("primary", HANDOFF)]
    assert len(await fire(desk, HANDOFF + 600, schedules)) == 1
    # Down over the next one by two hours: nobody is told stale news, the timer moves on.
    assert await fire(desk, NEXT + 7200, schedules) == []
    assert await desk.read(due) == [("primary", NEXT + 86400)]


async def test_switching_handoff_sms_off_drops_the_timer(desk: Desk) -> None:
    await desk.call(handoffs.ensure_timers, {"primary": schedule()}, HANDOFF - 60)
    await desk.call(handoffs.ensure_timers, {"primary": schedule(False)}, HANDOFF - 30)
    assert await desk.read(due) == []


async def test_the_daemon_sends_the_handoff_sms(smsbridge_daemon: DaemonFactory) -> None:
    """Through the paging loop's own transaction: the SMS reaches the gateway, once."""
    daemon = await smsbridge_daemon(
        f"""
contacts:
  alice: {{number: "{NUMBER["alice"]}", name: Alice}}
  bob: {{number: "{NUMBER["bob"]}", name: Bob}}
oncall:
  schedules:
    primary:
      timezone: Asia/Shanghai
      handoff_sms: true
      rotation: {{members: [alice, bob], shift: 1d, handoff: "10:00", start: 2026-11-01}}
"""
    )
    assert daemon.simulator is not None
    state = daemon.simulator.state

    def come_due(conn: sqlite3.Connection) -> None:
        # The timer the loop set when the daemon started, brought forward to now.
        assert len(due(conn)) == 1
        conn.execute("UPDATE timers SET due_at = ? WHERE kind = ?", (time.time() - 1, KIND))

    await daemon.store.write(come_due)
    await fire_paging_timers(daemon.pipeline, daemon.store, time.time, daemon.log)
    await state.wait_for(lambda s: len(s.messages) >= 1)
    (message,) = state.messages
    assert message.mobile == NUMBER["alice"] or message.mobile == NUMBER["bob"]
    assert "you are on call for primary from" in message.content
    await fire_paging_timers(daemon.pipeline, daemon.store, time.time, daemon.log)
    assert len(state.messages) == 1
    assert [key for key, _ in await daemon.store.read(due)] == ["primary"]  # the next one


async def test_a_member_whose_last_page_failed_is_warned_of(
    desk: Desk, tmp_path: Path, backend: tuple[Dialect, str]
) -> None:
    """alice's page fails: `unreachable` names her; `smsbridge oncall` warns; a later
    delivered page clears it."""
    schedules = {"primary": schedule()}
    _, started = await desk.open(T0)
    assert started is not None
    (page,) = started.pages
    await desk.report(page, "failed", T0 + 60)
    (found,) = await desk.call(handoffs.unreachable, schedules, DIRECTORY)
    assert (found.schedule, found.member, found.status) == ("primary", "Alice", "failed")

    # `oncall` reads the desk's own store, whichever backend it is on.
    url = backend[1]
    store_line = (
        f"store: {{url: '{url}'}}" if url else f"store: {{path: {tmp_path / 'store.sqlite3'}}}"
    )
    config = tmp_path / "smsbridge.yaml"
    config.write_text(
        f"""
{store_line}
contacts:
  alice: {{number: "{NUMBER["alice"]}", name: Alice}}
  bob: {{number: "{NUMBER["bob"]}", name: Bob}}
oncall:
  schedules:
    primary:
      timezone: Asia/Shanghai
      rotation: {{members: [alice, bob], shift: 1d, handoff: "10:00", start: 2026-11-01}}
"""
    )
    command = [str(BIN / "smsbridge"), "oncall", "-c", str(config), "--at", "2026-12-01T12:00"]
    table = subprocess.run(command, capture_output=True, text=True, check=True).stdout  # noqa: ASYNC221
    assert (
        "warning: Alice (151****0000) of primary: the last page, Mon 2026-11-30 08:53 +0800, "
        "was not delivered (it failed)"
    ) in table
    report = json.loads(
        subprocess.run([*command, "--json"], capture_output=True, text=True, check=True).stdout  # noqa: ASYNC221
    )
    assert [(w["member"], w["status"]) for w in report["warnings"]] == [("Alice", "failed")]

    _, again = await desk.open(T0 + 3600, group="db2")
    assert again is not None
    await desk.report(again.pages[0], "delivered", T0 + 3660)
    assert await desk.call(handoffs.unreachable, schedules, DIRECTORY) == []


async def test_an_undelivered_page_is_logged_and_in_the_metrics(
    smsbridge_daemon: DaemonFactory,
) -> None:
    """UNDELIV for alice's page: `page_undelivered` names her schedule, and the scrape shows
    smsbridge_oncall_member_unreachable for her."""
    daemon = await smsbridge_daemon(
        f"""
polling: {{replies: 1h, reports: 1h, balance: 1h}}
inputs:
  am: {{type: alertmanager, allow_unauthenticated: true}}
contacts:
  alice: {{number: "{A}", name: Alice}}
oncall:
  schedules:
    primary:
      timezone: Asia/Shanghai
      rotation: {{members: [alice], shift: 1d, handoff: "10:00", start: 2026-11-01}}
  policies:
    ops: {{steps: [{{notify: ["schedule:primary"]}}], report_timeout: 1h}}
rules:
  - name: critical
    match: {{kind: alert, labels: {{severity: critical}}}}
    page: {{policy: ops}}
"""
    )
    assert daemon.simulator is not None
    state = daemon.simulator.state
    state.set_carrier_codes({A: "UNDELIV"})
    assert (await post_json(daemon, "/hooks/am", notification("firing", "ab12")))[0] == 200
    await state.wait_for(has(1))

    def sent(conn: sqlite3.Connection) -> bool:
        return conn.execute("SELECT 1 FROM jobs WHERE ref != ''").fetchone() is not None

    await until(lambda: daemon.store.read(sent))
    await daemon.poller.poll_reports()
    await daemon.processor.drain()
    await refresh_gauges(daemon)
    sample = daemon.metrics.registry.get_sample_value
    labels = {"schedule": "primary", "member": "Alice"}
    assert sample("smsbridge_oncall_member_unreachable", labels) == 1
