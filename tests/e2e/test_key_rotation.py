"""`smsbridge rotate-key` while the daemon polls every second: no call ever carries a dead key."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from bridge.events import Event, EventKind
from bridge.plugins.c123.keyfile import write_key
from bridge.plugins.c123.models import Action
from bridge.plugins.c123.simulator import (
    DEFAULT_ACCOUNT,
    DEFAULT_AUTHKEY,
    Fault,
    FaultKind,
    Simulator,
    key_digest,
)
from bridge.testing import DaemonFactory

TEAM = ["15102110086", "15102110087"]
SMSBRIDGE = str(Path(sys.executable).parent / "smsbridge")


def config(url: str, key_file: Path, store: Path) -> str:
    return f"""
store: {{path: {store}}}
server: {{shutdown_timeout: 1s}}
gateway:
  base_url: {url}
  account: {DEFAULT_ACCOUNT}
  authkey_file: {key_file}
  rate_limit: null
polling: {{replies: 1s, reports: 1s, balance: 1s}}
groups: {{team: {TEAM}}}
rules:
  - name: page
    match: {{kind: alert}}
    sms: {{to: [team], repeat_interval: 0s, template: "{{{{ labels.alertname }}}}"}}
"""


def alert(name: str) -> Event:
    return Event(kind=EventKind.ALERT, source="am", labels={"alertname": name}, fingerprint=name)


async def test_rotate_key_while_the_daemon_polls_and_sends(
    smsbridge_daemon: DaemonFactory, simulator: Simulator, tmp_path: Path
) -> None:
    """The daemon finishes the call it has in flight, makes none while the key changes, and
    goes on with the new key: the gateway never sees a wrong key and never locks it."""
    key_file, store = tmp_path / "c123-authkey", tmp_path / "smsbridge.sqlite3"
    write_key(key_file, DEFAULT_AUTHKEY)
    text = config(simulator.url, key_file, store)
    (tmp_path / "cli.yaml").write_text(text)
    daemon = await smsbridge_daemon(text)
    await simulator.state.wait_for(lambda s: s.calls["getReply"] >= 2, timeout=5)  # polling
    # A page whose call hangs in flight (at the gateway, the key is checked after the wait).
    simulator.state.add_fault(Fault(FaultKind.DELAY, seconds=2, action=Action.SEND_BATCH))
    await daemon.processor.run_events([alert("BeforeRotation")])
    await simulator.state.wait_for(lambda s: s.account().in_flight >= 1 and s.faults == [])

    proc = await asyncio.create_subprocess_exec(
        SMSBRIDGE,
        "rotate-key",
        "-c",
        str(tmp_path / "cli.yaml"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert await proc.wait() == 0, out.decode()
    new_key = key_file.read_text().strip()
    assert new_key != DEFAULT_AUTHKEY
    assert simulator.state.account().authkey == new_key

    await daemon.processor.run_events([alert("AfterRotation")])
    expected = {(mobile, name) for mobile in TEAM for name in ("BeforeRotation", "AfterRotation")}
    await simulator.state.wait_for(
        lambda s: {(m.mobile, m.content) for m in s.messages} == expected, timeout=10
    )
    polls = simulator.state.calls_by_key[key_digest(new_key)]
    await simulator.state.wait_for(lambda s: s.calls_by_key[key_digest(new_key)] >= polls + 3)
    account = simulator.state.account()
    assert (account.wrong_key_calls, account.key_locked) == (0, False)
    assert daemon.client.gate.refused == 0  # nothing was refused: calls waited, then went on
