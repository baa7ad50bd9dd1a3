"""Two instances in one process on one PostgreSQL database: what only the leader does happens
once, a clean stop hands the leadership on, and `status` sees both."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bridge.commands.status import read_status
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
TOKEN = "instances-token-0123456789"


def config(folder: Path, url: str, gateway: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(f"""
server: {{listen: "127.0.0.1:0"}}
store: {{url: "{url}"}}
gateway:
  base_url: {gateway}
  account: {DEFAULT_ACCOUNT}
  authkey: {DEFAULT_AUTHKEY}
  rate_limit: null
polling: {{replies: 1h, reports: 1h, balance: 1h}}
inputs:
  am:
    type: alertmanager
    auth: {{bearer: {TOKEN}}}
contacts:
  alice: "{ALICE}"
rules:
  - name: page
    match: {{kind: alert}}
    sms: {{to: [alice], group_wait: 500ms, repeat_interval: 0s}}
""")
    return path


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    settings = SimulatorSettings(
        accounts=(SimAccount(balance=10**6),), report_delay=3600, rate_limit=None
    )
    async with Simulator(settings) as sim:
        yield sim


@pytest.fixture
async def pair(tmp_path: Path, simulator: Simulator, pg_url: str) -> AsyncIterator[list[Daemon]]:
    daemons: list[Daemon] = []
    try:
        for index in range(2):
            daemon = Daemon(load_settings(config(tmp_path / f"i{index}", pg_url, simulator.url)))
            await daemon.start()
            daemons.append(daemon)
        yield daemons
    finally:
        for daemon in daemons:
            await daemon.stop()


async def post(daemon: Daemon, name: str) -> None:
    body = {
        "version": "4",
        "groupKey": name,
        "status": "firing",
        "alerts": [{"status": "firing", "labels": {"alertname": "DiskFull", "i": name}}],
    }
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.post(f"{daemon.url}/hooks/am", json=body) as response,
    ):
        assert response.status == 200, await response.text()


async def test_a_storm_group_flushes_once_and_a_clean_stop_hands_the_leadership_on(
    pair: list[Daemon], simulator: Simulator
) -> None:
    state = simulator.state
    for n in range(4):  # alerts of one group arrive at both instances
        await post(pair[n % 2], f"a{n}")
    await state.wait_for(lambda s: len(s.messages) >= 1, timeout=10)
    await asyncio.sleep(1.0)  # nothing to await: a second flush would come by now
    assert len(state.messages) == 1, [m.content for m in state.messages]
    assert state.messages[0].content.startswith("[FIRING:4] DiskFull")  # all four, once

    leader = next(d for d in pair if d.cluster.processor.held)
    other = next(d for d in pair if d is not leader)
    assert not other.cluster.processor.held
    await leader.stop()  # hands its leases on at once
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not other.cluster.processor.held:  # its next renewal, within a quarter period
        assert loop.time() < deadline, "the leadership was not taken over"
        await asyncio.sleep(0.05)
    for n in range(2):
        await post(other, f"b{n}")
    await state.wait_for(lambda s: len(s.messages) >= 2, timeout=10)
    await asyncio.sleep(1.0)
    assert len(state.messages) == 2


async def test_status_sees_both_instances_and_who_leads(pair: list[Daemon], tmp_path: Path) -> None:
    status = await pair[0].store.read(read_status)
    alive = {row.id for row in status.instances if row.alive}
    assert alive == {daemon.cluster.identity.id for daemon in pair}
    held = {lease.name: lease.holder for lease in status.leases if lease.held}
    assert set(held) == {"processor", f"poller:{DEFAULT_ACCOUNT}"}
    assert set(held.values()) <= alive
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "smsbridge"),
        "status",
        "-c",
        str(tmp_path / "i0" / "config.yaml"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    for daemon in pair:
        assert f"  {daemon.cluster.identity.id}  alive  " in out.decode()
    assert f"  processor  held by {held['processor']} for " in out.decode()


async def test_a_delivery_to_a_follower_wakes_the_leader_at_once(
    pair: list[Daemon], simulator: Simulator
) -> None:
    """The instance that took the webhook does not process it; a NOTIFY wakes the processor
    leader, which would otherwise find the row only at its next poll (every second)."""
    leader = next(d for d in pair if d.cluster.processor.held)
    follower = next(d for d in pair if d is not leader)
    assert leader.wakeups is not None
    assert follower.wakeups is not None
    loop = asyncio.get_running_loop()
    for n in range(3):
        heard = leader.wakeups.heard
        sent = len(simulator.state.messages)
        began = loop.time()
        await post(follower, f"w{n}")
        await simulator.state.wait_for(lambda s, sent=sent: len(s.messages) > sent, timeout=5)
        # The rule's group_wait is 0.5 s: the SMS goes then, not a poll later.
        assert loop.time() - began < 0.5 + 0.4
        assert leader.wakeups.heard > heard
    assert follower.wakeups.sent >= 3
