"""End to end with a real Alertmanager: alert -> SMS, resolved -> SMS, reply -> signed callback."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bridge.plugins.c123.simulator import SimulatorSettings
from bridge.runtime.daemon import Daemon
from bridge.runtime.settings import load_settings
from tests.e2e.alertmanager_process import ALERTMANAGER, post_disk_full, running_alertmanager

pytestmark = pytest.mark.skipif(
    ALERTMANAGER is None,
    reason="needs Debian's prometheus-alertmanager (./dev test installs it when run as root)",
)
TOKEN = "am-token-0123456789"
SECRET = "callback-secret-abcdef"
ALICE, BOB = "15102110086", "15102110087"


class Receiver:
    """A callback receiver that checks signatures the documented way and records bodies."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.refused = 0
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        stamp = request.headers.get("X-Smsbridge-Timestamp", "")
        expected = (
            "sha256="
            + hmac.new(SECRET.encode(), stamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
        )
        fresh = stamp.isdigit() and abs(time.time() - int(stamp)) <= 300
        if not fresh or not hmac.compare_digest(
            expected, request.headers.get("X-Smsbridge-Signature", "")
        ):
            self.refused += 1
            return web.json_response({"error": "bad signature"}, status=401)
        self.bodies.append(json.loads(raw))
        self.arrived.set()
        return web.json_response({"ok": True})


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    recv = Receiver()
    app = web.Application()
    app.router.add_post("/callback", recv.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield recv, f"http://127.0.0.1:{port}/callback"
    await runner.cleanup()


@pytest.fixture
async def daemon(tmp_path: Path, receiver: tuple[Receiver, str]) -> AsyncIterator[Daemon]:
    _, url = receiver
    config = tmp_path / "smsbridge.yaml"
    config.write_text(f"""
server: {{listen: "127.0.0.1:0"}}
store: {{path: {tmp_path / "outbox.sqlite3"}}}
polling: {{replies: 200ms, reports: 1h, balance: 1h}}
contacts:
  alice: "{ALICE}"
  bob: "{BOB}"
groups:
  oncall: [alice, bob]
inputs:
  am:
    type: alertmanager
    auth: {{bearer: "{TOKEN}"}}
outputs:
  callback:
    type: http_callback
    url: {url}
    secret: "{SECRET}"
rules:
  - name: page-oncall
    match: {{kind: alert, source: am, labels: {{severity: critical}}}}
    sms:
      to: [oncall]
      repeat_interval: 0s
  - name: replies-to-callback
    match: {{kind: reply}}
    post: {{to: callback}}
""")
    daemon = Daemon(
        load_settings(config),
        simulator_settings=SimulatorSettings(report_delay=0, rate_limit=None),
    )
    await daemon.start()
    yield daemon
    await daemon.stop()


@pytest.fixture
def alertmanager(tmp_path: Path, daemon: Daemon) -> Iterator[str]:
    assert ALERTMANAGER is not None
    config = f"""
route:
  receiver: smsbridge
  group_by: [alertname]
  group_wait: 100ms
  group_interval: 500ms
  repeat_interval: 1h
receivers:
  - name: smsbridge
    webhook_configs:
      - url: {daemon.url}/hooks/am
        send_resolved: true
        http_config:
          authorization: {{credentials: "{TOKEN}"}}
"""
    with running_alertmanager(tmp_path, config) as url:
        yield url


async def test_alert_resolve_and_reply(
    daemon: Daemon, alertmanager: str, receiver: tuple[Receiver, str]
) -> None:
    """Firing and resolved alerts page on-call; a reply reaches the callback, signed."""
    recv, _ = receiver
    sim = daemon.simulator
    assert sim is not None
    await post_disk_full(alertmanager)
    await sim.state.wait_for(lambda s: len(s.messages) >= 2, timeout=20)
    firing = sim.state.messages[:2]
    assert sorted(m.mobile for m in firing) == [ALICE, BOB]
    assert all("DiskFull" in m.content and "FIRING" in m.content.upper() for m in firing)

    await post_disk_full(alertmanager, resolved=True)
    await sim.state.wait_for(lambda s: len(s.messages) >= 4, timeout=20)
    resolved = sim.state.messages[2:4]
    assert sorted(m.mobile for m in resolved) == [ALICE, BOB]
    assert all("RESOLVED" in m.content.upper() for m in resolved)

    sim.state.inject_reply(ALICE, "ack, looking")
    await asyncio.wait_for(recv.arrived.wait(), timeout=20)
    (body,) = recv.bodies
    assert recv.refused == 0
    assert body["event"]["kind"] == "reply"
    assert body["event"]["text"] == "ack, looking"
    assert body["event"]["labels"]["alertname"] == "DiskFull"
    assert body["event"]["labels"]["instance"] == "db1"
    assert len(sim.state.messages) == 4  # nothing was sent twice
