"""Concurrent sends: calls in flight per account are bounded, and a slow one holds up nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.events import Event, EventKind
from bridge.plugins.c123.models import Action
from bridge.plugins.c123.simulator import (
    DEFAULT_ACCOUNT,
    DEFAULT_AUTHKEY,
    Fault,
    FaultKind,
    Simulator,
    SimulatorSettings,
)
from bridge.runtime.daemon import Daemon
from bridge.runtime.settings import load_settings

ALICE = "15102110086"
TEAM = ["15102110087", "15102110088", "15102110089"]


def config(tmp_path: Path, url: str, concurrency: int | None = None) -> Path:
    dispatch = f"dispatch: {{concurrency: {concurrency}}}" if concurrency else ""
    path = tmp_path / "config.yaml"
    path.write_text(f"""
server: {{listen: "127.0.0.1:0", shutdown_timeout: 1s}}
store: {{path: {tmp_path / "outbox.sqlite3"}}}
gateway:
  base_url: {url}
  account: {DEFAULT_ACCOUNT}
  authkey: {DEFAULT_AUTHKEY}
  rate_limit: null
polling: {{replies: 1h, reports: 1h, balance: 1h}}
{dispatch}
contacts: {{alice: "{ALICE}"}}
groups: {{team: {TEAM}}}
rules:
  - name: team
    match: {{labels: {{team: db}}}}
    sms: {{to: [team], repeat_interval: 0s, template: "{{{{ labels.alertname }}}}"}}
  - name: alice
    match: {{labels: {{team: web}}}}
    sms: {{to: [alice], repeat_interval: 0s, template: "{{{{ labels.alertname }}}}"}}
""")
    return path


def alert(name: str, team: str) -> Event:
    return Event(
        kind=EventKind.ALERT, source="t", labels={"alertname": name, "team": team}, fingerprint=name
    )


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    async with Simulator(SimulatorSettings(report_delay=3600, rate_limit=None)) as sim:
        yield sim


async def test_a_hanging_call_holds_up_no_other_page(tmp_path: Path, simulator: Simulator) -> None:
    """While one sendBatch hangs for 8 s, an unrelated page reaches the gateway."""
    daemon = Daemon(load_settings(config(tmp_path, simulator.url)))
    await daemon.start()
    try:
        await simulator.state.wait_for(lambda s: s.calls["getBalance"] >= 1)  # key proven
        simulator.state.add_fault(Fault(FaultKind.DELAY, seconds=8, action=Action.SEND_BATCH))
        await daemon.processor.run_events([alert("DiskFull", "db")])
        await simulator.state.wait_for(lambda s: s.account().in_flight == 1)
        await daemon.processor.run_events([alert("SiteDown", "web")])
        await simulator.state.wait_for(lambda s: len(s.messages) == 1, timeout=3)
        (message,) = simulator.state.messages
        assert (message.mobile, message.content) == (ALICE, "SiteDown")
        assert simulator.state.account().in_flight == 1  # the sendBatch still hangs
    finally:
        await daemon.stop()


@pytest.mark.parametrize("concurrency", [None, 1])
async def test_calls_in_flight_are_bounded(
    tmp_path: Path, simulator: Simulator, concurrency: int | None
) -> None:
    """Eight pages that need eight calls go out at most `dispatch.concurrency` (4) at once."""
    daemon = Daemon(load_settings(config(tmp_path, simulator.url, concurrency)))
    await daemon.start()
    try:
        # The polls at start are done, so every call from here on is a send.
        await simulator.state.wait_for(
            lambda s: (
                s.calls["getReply"] + s.calls["getSendState"] == 2
                and s.calls["getBalance"] == 2
                and s.account().in_flight == 0
            )
        )
        simulator.state.account().max_in_flight = 0
        # One number, eight texts: no call can carry two of them.
        simulator.state.add_fault(
            Fault(FaultKind.DELAY, seconds=0.2, action=Action.SEND_ONCE, count=8)
        )
        await daemon.processor.run_events([alert(f"Alert{n}", "web") for n in range(8)])
        await simulator.state.wait_for(lambda s: len(s.messages) == 8, timeout=10)
    finally:
        await daemon.stop()
    assert simulator.state.calls["sendOnce"] == 8
    assert simulator.state.account().max_in_flight == (concurrency or 4)
