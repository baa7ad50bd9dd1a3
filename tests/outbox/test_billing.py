"""Billed figures: the gateway's total and price are recorded, and the cost metric reads exactly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest

from bridge.events import Event, EventKind
from bridge.plugins.c123.simulator import (
    DEFAULT_ACCOUNT,
    DEFAULT_AUTHKEY,
    SimAccount,
    Simulator,
    SimulatorSettings,
)
from bridge.runtime.daemon import Daemon
from bridge.runtime.settings import load_settings

ALICE = "15102110086"
TEAM = ["15102110087", "15102110088", "15102110089"]
# The gateway appends a longer signature than the config says: its bill is not the estimate.
SIGNATURE = "【一个比配置里写的长得多的公司签名】"
LONG = "磁" * 55  # one segment with the config's signature, two with the gateway's


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    account = SimAccount(signatures={0: SIGNATURE}, price=Decimal("0.10"))
    settings = SimulatorSettings(accounts=(account,), report_delay=3600, rate_limit=None)
    async with Simulator(settings) as sim:
        yield sim


def config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"""
server: {{listen: "127.0.0.1:0"}}
store: {{path: {tmp_path / "outbox.sqlite3"}}}
gateway: {{base_url: {url}, account: {DEFAULT_ACCOUNT}, authkey: {DEFAULT_AUTHKEY}}}
polling: {{replies: 1h, reports: 1h, balance: 1h}}
contacts: {{alice: "{ALICE}"}}
groups: {{team: {TEAM}}}
rules:
  - name: team
    match: {{labels: {{team: db}}}}
    sms: {{to: [team], repeat_interval: 0s, template: "{{{{ text }}}}"}}
  - name: alice
    match: {{labels: {{team: web}}}}
    sms: {{to: [alice], repeat_interval: 0s, template: "{{{{ text }}}}"}}
""")
    return path


async def test_segments_and_cost_are_what_the_gateway_billed(
    tmp_path: Path, simulator: Simulator
) -> None:
    """Each job records the gateway's total and price (one sendOnce's total shared by its
    numbers); the cost counter reads exactly 1.3 after thirteen segments at 0.10."""
    daemon = Daemon(load_settings(config(tmp_path, simulator.url)))
    await daemon.start()
    try:
        # One text to three numbers (one sendOnce, billed as one total), and seven short ones.
        events = [_alert("db", LONG)] + [_alert("web", f"short {n}") for n in range(7)]
        await daemon.processor.run_events(events)
        await simulator.state.wait_for(lambda s: len(s.messages) == 10)
        await daemon.dispatcher.stop(grace=5)
        rows = await daemon.store.read(
            lambda c: c.execute("SELECT recipient, text, segments, cost FROM jobs").fetchall()
        )
        async with aiohttp.ClientSession() as http, http.get(daemon.url + "/metrics") as answer:
            scrape = await answer.text()
    finally:
        await daemon.stop()
    billed = {(m.mobile, m.content): m.segments for m in simulator.state.messages}
    recorded = {(row["recipient"], row["text"]): row["segments"] for row in rows}
    assert recorded == billed
    assert {billed[(number, LONG)] for number in TEAM} == {2}  # the estimate says 1
    assert all(Decimal(row["cost"]) == Decimal("0.10") * row["segments"] for row in rows)
    assert sum(billed.values()) == 13
    assert "\nsmsbridge_sms_cost_yuan_total 1.3\n" in scrape
    assert "\nsmsbridge_sms_segments_total 13.0\n" in scrape


def _alert(team: str, text: str) -> Event:
    return Event(
        kind=EventKind.ALERT, source="t", labels={"alertname": text, "team": team}, text=text
    )
