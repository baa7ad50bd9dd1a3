"""Gateway faults against the simulator: every message ends sent, or failed with a reason."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from bridge.events import Event, EventKind
from bridge.plugins.c123.models import Action
from bridge.plugins.c123.simulator import (
    DEFAULT_ACCOUNT,
    DEFAULT_AUTHKEY,
    Fault,
    FaultKind,
    MalformedVariant,
    Simulator,
    SimulatorSettings,
)
from bridge.runtime.daemon import Daemon
from bridge.runtime.settings import load_settings

TEAM = ["15102110086", "15102110087", "15102110088"]
# Three numbers, one text: the planner makes that one sendBatch call. Pollers run at start,
# so faults are aimed at sends only.
SEND = Action.SEND_BATCH


def config(tmp_path: Path, url: str, *, retry_ambiguous: bool = True) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"""
server: {{listen: "127.0.0.1:0"}}
store: {{path: {tmp_path / "outbox.sqlite3"}}}
gateway:
  base_url: {url}
  account: {DEFAULT_ACCOUNT}
  authkey: {DEFAULT_AUTHKEY}
  rate_limit: null
  timeout: {{connect: 1s, total: 300ms}}
polling: {{replies: 1h, reports: 1h, balance: 1h}}
dispatch: {{backoff_max: 20ms, max_attempts: 8}}
groups:
  team: {TEAM}
rules:
  - name: page
    match: {{kind: alert}}
    sms: {{to: [team], retry_ambiguous: {str(retry_ambiguous).lower()}}}
""")
    return path


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    async with Simulator(SimulatorSettings(report_delay=3600, rate_limit=None)) as sim:
        yield sim


async def run(tmp_path: Path, sim: Simulator, **options: bool) -> Daemon:
    daemon = Daemon(load_settings(config(tmp_path, sim.url, **options)))
    await daemon.start()
    await daemon.processor.run_events(
        [Event(kind=EventKind.ALERT, source="t", labels={"alertname": "DiskFull"})]
    )
    return daemon


async def settled(daemon: Daemon) -> dict[str, tuple[str, str]]:
    await daemon.dispatcher.stop(grace=5)  # outcomes under way are recorded first
    rows = await daemon.store.read(
        lambda c: c.execute("SELECT recipient, state, reason FROM jobs").fetchall()
    )
    await daemon.stop()
    return {row["recipient"]: (row["state"], row["reason"]) for row in rows}


@pytest.mark.parametrize(
    "faults",
    [
        [Fault(action=SEND, kind=FaultKind.CODE, code=-1, count=3)],
        [Fault(action=SEND, kind=FaultKind.DELAY, seconds=1)],
        [Fault(action=SEND, kind=FaultKind.HTTP500)],
        [Fault(action=SEND, kind=FaultKind.MALFORMED, variant=MalformedVariant.TRUNCATED)],
        [Fault(action=SEND, kind=FaultKind.DROP)],
        [Fault(action=SEND, kind=FaultKind.ACCEPT_THEN_DROP)],
        [
            Fault(action=SEND, kind=FaultKind.CODE, code=-10),
            Fault(action=SEND, kind=FaultKind.HTTP500),
            Fault(action=SEND, kind=FaultKind.DROP),
        ],
    ],
    ids=[
        "rate-limited-burst",
        "timeout",
        "http-500",
        "malformed",
        "dropped",
        "accepted-then-dropped",
        "mixed",
    ],
)
async def test_transient_faults_end_sent(
    tmp_path: Path, simulator: Simulator, faults: list[Fault]
) -> None:
    """After transient faults, every page reaches the gateway (ambiguous ones may repeat)."""
    for fault in faults:
        simulator.state.add_fault(fault)
    daemon = await run(tmp_path, simulator)
    faulted = sum(fault.count for fault in faults)
    # Every faulted call, then the one that gets through; stop() waits for its outcome.
    await simulator.state.wait_for(lambda s: s.calls["sendBatch"] > faulted)
    states = await settled(daemon)
    assert {state for state, _ in states.values()} == {"sent"}
    assert {m.mobile for m in simulator.state.messages} == set(TEAM)


async def test_low_balance_holds_until_top_up(tmp_path: Path, simulator: Simulator) -> None:
    """-9 holds the messages without using up attempts; a top-up releases them."""
    simulator.state.set_balance(remain=Decimal("0.05"))
    daemon = await run(tmp_path, simulator)
    await simulator.state.wait_for(lambda s: s.calls["sendBatch"] >= 10)  # held, looked at again
    assert simulator.state.messages == []
    simulator.state.set_balance(add=Decimal(10))
    await daemon.poller.poll_balance()
    await daemon.processor.drain()
    await simulator.state.wait_for(lambda s: {m.mobile for m in s.messages} >= set(TEAM))
    states = await settled(daemon)
    assert {state for state, _ in states.values()} == {"sent"}


async def test_an_account_fault_holds_instead_of_failing(
    tmp_path: Path, simulator: Simulator
) -> None:
    """-2 pauses the account: the messages are held (no attempt used), never failed."""
    simulator.state.add_fault(Fault(action=SEND, kind=FaultKind.CODE, code=-2))
    daemon = await run(tmp_path, simulator)
    await simulator.state.wait_for(lambda s: not s.faults)
    await daemon.dispatcher.stop(grace=5)
    rows = await daemon.store.read(
        lambda c: c.execute("SELECT state, attempts, code, reason FROM jobs").fetchall()
    )
    await daemon.stop()
    assert {tuple(row) for row in rows} == {
        (
            "pending",
            0,
            "pause_account",
            "sendBatch: gateway refused with code -2: wrong key (repeated wrong keys lock it)",
        )
    }
    assert simulator.state.calls["sendBatch"] == 1


async def test_rate_limit_retries_are_bounded(tmp_path: Path, simulator: Simulator) -> None:
    """A gateway that keeps answering -1 makes the messages fail after the last attempt."""
    simulator.state.add_fault(Fault(action=SEND, kind=FaultKind.CODE, code=-1, count=8))
    daemon = await run(tmp_path, simulator)
    await simulator.state.wait_for(lambda s: not s.faults)
    states = await settled(daemon)
    ((state, reason),) = set(states.values())
    assert state == "failed"
    assert reason.startswith("gave up after 8 attempts: sendBatch: gateway refused with code -1")


async def test_no_duplicates_rule_settles_unknown(tmp_path: Path, simulator: Simulator) -> None:
    """Where a rule forbids duplicates, an ambiguous failure is settled unknown, not resent."""
    simulator.state.add_fault(Fault(action=SEND, kind=FaultKind.ACCEPT_THEN_DROP))
    daemon = await run(tmp_path, simulator, retry_ambiguous=False)
    await simulator.state.wait_for(lambda s: not s.faults)
    states = await settled(daemon)
    assert {state for state, _ in states.values()} == {"unknown"}
    assert all("may" not in reason or reason for _, reason in states.values())
    assert len(simulator.state.messages) == 3  # sent once, never repeated
