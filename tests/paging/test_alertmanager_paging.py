"""Paging end to end with a real Alertmanager (Debian's) and the c123 simulator, short delays:
alert -> alice paged -> no reply -> bob paged -> bob acknowledges by SMS (`1a`, `确认`) -> no
further page, alice and the thread told -> the alert resolves -> incident resolved. And the
daemon killed (SIGKILL) mid-escalation: the next step still fires on time, exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bridge.plugins.c123.simulator import (
    DEFAULT_ACCOUNT,
    DEFAULT_AUTHKEY,
    GatewayState,
    Simulator,
    SimulatorSettings,
)
from bridge.runtime.daemon import Daemon
from bridge.testing import CapturingOutput, DaemonFactory
from tests.e2e.alertmanager_process import (
    ALERTMANAGER,
    free_port,
    post_disk_full,
    running_alertmanager,
)
from tests.e2e.test_crash import start_daemon
from tests.paging.test_e2e import incident_state, sent_to

pytestmark = pytest.mark.skipif(
    ALERTMANAGER is None,
    reason="needs Debian's prometheus-alertmanager (./dev test installs it when run as root)",
)
A, B, C = "15102110086", "15102110087", "15102110088"
PAGE = "[#1] DiskFull: disk / is 97% full - reply 1a to ack, 1c to close, 1e to escalate"
BOB_AFTER = 2.0  # seconds from alice's page to bob's
REPLY_POLL = 0.2  # seconds between getReply polls


def oncall(bob_after: float, carol_after: float) -> str:
    return f"""
contacts:
  alice: {{number: "{A}", name: Alice}}
  bob: {{number: "{B}", name: Bob}}
  carol: {{number: "{C}", name: Carol}}
oncall:
  policies:
    ops:
      steps:
        - {{notify: [alice]}}
        - {{notify: [bob], after: {int(bob_after * 1000)}ms}}
        - {{notify: [carol], after: {int(carol_after * 1000)}ms}}
      report_timeout: 1h
rules:
  - name: critical
    match: {{kind: alert, source: am, labels: {{severity: critical}}}}
    page: {{policy: ops, group_by: [alertname, instance]}}
"""


@contextmanager
def alertmanager(tmp_path: Path, hook: str) -> Iterator[str]:
    config = f"""
route:
  receiver: smsbridge
  group_by: [alertname, instance]
  group_wait: 100ms
  group_interval: 300ms
  repeat_interval: 1h
receivers:
  - name: smsbridge
    webhook_configs: [{{url: "{hook}", send_resolved: true}}]
"""
    with running_alertmanager(tmp_path, config) as url:
        yield url


async def recorded(store: Path) -> None:
    """Wait until the daemon recorded a sent job (read from its SQLite file, read-only)."""
    deadline = time.monotonic() + 10
    while True:
        with contextlib.closing(sqlite3.connect(f"{store.as_uri()}?mode=ro", uri=True)) as db:
            if db.execute("SELECT 1 FROM jobs WHERE state = 'sent'").fetchone():
                return
        assert time.monotonic() < deadline, "the page was never recorded as sent"
        await asyncio.sleep(0.02)


async def arrival(state: GatewayState, count: int, timeout: float = 20.0) -> float:  # noqa: ASYNC109
    """When (monotonic) the gateway had received `count` messages."""
    await state.wait_for(lambda s: len(s.messages) >= count, timeout=timeout)
    return time.monotonic()


@pytest.mark.parametrize("answer", ["1a", "确认"])
async def test_alertmanager_to_acknowledged_to_resolved(
    smsbridge_daemon: DaemonFactory,
    capture_output: CapturingOutput,
    tmp_path: Path,
    answer: str,
) -> None:
    daemon: Daemon = await smsbridge_daemon(
        f"""
polling: {{replies: {int(REPLY_POLL * 1000)}ms, reports: 1h, balance: 1h}}
dispatch: {{backoff_max: 50ms}}
inputs:
  am: {{type: alertmanager, allow_unauthenticated: true}}
outputs:
  thread: {{type: capture}}
conversations:
  default: {{output: thread, channel: C0PAGES}}
{oncall(BOB_AFTER, 3.0)}"""
    )
    assert daemon.simulator is not None
    state = daemon.simulator.state
    with alertmanager(tmp_path, f"{daemon.url}/hooks/am") as am:
        await post_disk_full(am)
        alice_at = await arrival(state, 1)
        assert sent_to(state) == [(A, PAGE)]
        bob_at = await arrival(state, 2)  # nobody answered alice
        assert sent_to(state)[1] == (B, PAGE)
        assert BOB_AFTER - 0.5 <= bob_at - alice_at <= BOB_AFTER + 1.5

        replied = time.monotonic()
        state.inject_reply(B, answer)
        await arrival(state, 4)
        acked = time.monotonic()
        assert await incident_state(daemon) == "acknowledged"
        assert acked - replied <= REPLY_POLL + 1.0
        assert sorted(sent_to(state)[2:]) == [
            (A, "Bob acknowledged #1 DiskFull: disk / is 97% full"),
            (B, "acknowledged #1 DiskFull: disk / is 97% full"),
        ]
        thread = [(job.recipient, job.text) for job in capture_output.delivered]
        assert thread[0] == ("C0PAGES", "#1 DiskFull: disk / is 97% full - paging Alice")
        assert ("C0PAGES", "Bob acknowledged #1 DiskFull: disk / is 97% full") in thread

        # Carol's step would have come 3 s after bob's: it never does.
        await asyncio.sleep(max(bob_at + 3.5 - time.monotonic(), 0))
        assert len(state.messages) == 4

        await post_disk_full(am, resolved=True)
        deadline = time.monotonic() + 20
        while await incident_state(daemon) != "resolved":
            assert time.monotonic() < deadline, "the resolution never reached the incident"
            await asyncio.sleep(0.05)
        assert len(state.messages) == 4


async def test_sigkill_mid_escalation_pages_the_next_step_on_time_once(tmp_path: Path) -> None:
    """alice paged; the daemon is killed (SIGKILL) at once; a new daemon on the same store pages
    bob when his step comes due, and only once."""
    port = free_port()
    async with Simulator(SimulatorSettings(report_delay=0, rate_limit=None)) as simulator:
        config = tmp_path / "smsbridge.yaml"
        config.write_text(
            f"""
server: {{listen: "127.0.0.1:{port}"}}
store: {{path: {tmp_path / "outbox.sqlite3"}}}
gateway:
  base_url: {simulator.url}
  account: {DEFAULT_ACCOUNT}
  authkey: {DEFAULT_AUTHKEY}
  rate_limit: null
polling: {{replies: 1h, reports: 1h, balance: 1h}}
inputs:
  am: {{type: alertmanager, allow_unauthenticated: true}}
{oncall(3.0, 60.0)}"""
        )
        state = simulator.state
        proc, url = await start_daemon(config)
        try:
            with alertmanager(tmp_path, f"{url}/hooks/am") as am:
                await post_disk_full(am)
                alice_at = await arrival(state, 1)
                # Killed once the page's outcome is recorded (a kill during the gateway call
                # repeats that call: a duplicate page beats a missed one, by design).
                await recorded(tmp_path / "outbox.sqlite3")
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
                assert sent_to(state) == [(A, PAGE)]
                proc, _ = await start_daemon(config)
                bob_at = await arrival(state, 2)
                assert sent_to(state)[1] == (B, PAGE)
                assert 3.0 - 0.5 <= bob_at - alice_at <= 3.0 + 1.5  # on time
                await asyncio.sleep(1.5)
                assert sent_to(state) == [(A, PAGE), (B, PAGE)]  # exactly once
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), timeout=30)
