"""kill -9 while 10,000 accepted alerts are being sent; after a restart every one arrives."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bridge.plugins.c123.simulator import (
    DEFAULT_ACCOUNT,
    DEFAULT_AUTHKEY,
    Fault,
    FaultKind,
    SimAccount,
    Simulator,
    SimulatorSettings,
)
from tests.unit_file import unit_environment

TEAMS = 100
PER_REQUEST = 100
REQUESTS = 100  # 10,000 alerts
CONCURRENCY = 4  # dispatch.concurrency's default: gateway calls in flight at once
TOKEN = "crash-test-token"
SMSBRIDGE = str(Path(sys.executable).parent / "smsbridge")


def config_text(tmp_path: Path, gateway: str) -> str:
    contacts = "\n".join(f'  team{n}: "139{n:08d}"' for n in range(TEAMS))
    rules = "\n".join(
        f"""  - name: team{n}
    match: {{labels: {{team: t{n}}}}}
    sms: {{to: [team{n}], repeat_interval: 0s, template: "{{{{ labels.alertname }}}}"}}"""
        for n in range(TEAMS)
    )
    return f"""
server: {{listen: "127.0.0.1:0"}}
store: {{path: {tmp_path / "outbox.sqlite3"}}}
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
{contacts}
rules:
{rules}
"""


async def start_daemon(config: Path) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        SMSBRIDGE,
        "run",
        "-c",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, **unit_environment()},  # as the unit runs it: optimized
    )
    assert proc.stdout is not None
    while line := await asyncio.wait_for(proc.stdout.readline(), timeout=30):
        event = json.loads(line)
        if event.get("event") == "daemon_started":
            asyncio.create_task(drain(proc.stdout))  # noqa: RUF006 - ends with the process
            return proc, event["url"]
    raise AssertionError("the daemon exited before it started")


async def drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


def payload(request: int) -> dict[str, object]:
    alerts = []
    for i in range(PER_REQUEST):
        n = request * PER_REQUEST + i
        alerts.append(
            {
                "status": "firing",
                "labels": {"alertname": f"Alert{n:05d}", "team": f"t{i % TEAMS}"},
                "annotations": {},
                "startsAt": "2026-11-25T00:00:00Z",
                "fingerprint": f"{n:016x}",
            }
        )
    return {
        "version": "4",
        "groupKey": f'{{}}:{{req="{request}"}}',
        "status": "firing",
        "receiver": "smsbridge",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://am",
        "truncatedAlerts": 0,
        "alerts": alerts,
    }


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    settings = SimulatorSettings(
        accounts=(SimAccount(balance=10**6),), report_delay=3600, rate_limit=None
    )
    async with Simulator(settings) as sim:
        yield sim


async def test_kill_nine_loses_nothing(tmp_path: Path, simulator: Simulator) -> None:
    """Every accepted alert reaches the gateway; only the calls in flight at the kill repeat."""
    config = tmp_path / "smsbridge.yaml"
    config.write_text(config_text(tmp_path, simulator.url))
    # Slow each gateway call so the kill lands in the middle of sending.
    simulator.state.add_fault(Fault(FaultKind.DELAY, seconds=0.05, count=10**6))
    proc, url = await start_daemon(config)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        for request in range(REQUESTS):
            async with http.post(f"{url}/hooks/am", json=payload(request)) as response:
                assert response.status == 200, await response.text()
    await simulator.state.wait_for(lambda s: len(s.messages) >= 2000, timeout=60)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    at_kill = len(simulator.state.messages)
    assert at_kill < REQUESTS * PER_REQUEST, "the kill came too late to test anything"

    simulator.state.clear_faults()
    proc, _ = await start_daemon(config)
    try:
        expected = {f"Alert{n:05d}" for n in range(REQUESTS * PER_REQUEST)}
        await simulator.state.wait_for(
            lambda s: {m.content for m in s.messages} >= expected, timeout=120
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await proc.wait() == 0
    repeats = Counter(m.content for m in simulator.state.messages)
    duplicated = [content for content, count in repeats.items() if count > 1]
    assert len(duplicated) <= CONCURRENCY * PER_REQUEST, (
        f"{len(duplicated)} repeated: more than the calls in flight"
    )
    assert all(repeats[c] == 2 for c in duplicated)
