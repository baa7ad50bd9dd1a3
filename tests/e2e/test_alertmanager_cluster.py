"""Two real Alertmanager peers clustered on loopback, each notifying smsbridge: both deliver
(peer timeouts and gossip are shortened so that neither waits for the other), their payloads
for the one group differ, and each alert pages once."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from bridge.plugins.c123.simulator import (
    DEFAULT_ACCOUNT,
    DEFAULT_AUTHKEY,
    Simulator,
    SimulatorSettings,
)
from bridge.runtime.daemon import Daemon
from bridge.runtime.settings import load_settings
from tests.e2e.alertmanager_process import (
    ALERTMANAGER,
    free_port,
    post_alerts,
    running_alertmanager,
)

pytestmark = pytest.mark.skipif(
    ALERTMANAGER is None,
    reason="needs Debian's prometheus-alertmanager (./dev test installs it when run as root)",
)
TOKEN = "am-cluster-token-0123"
ALICE = "15102110086"


def daemon_config(tmp_path: Path, store: str, gateway: str) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = tmp_path / "smsbridge.yaml"
    config.write_text(f"""
server: {{listen: "127.0.0.1:0"}}
store: {store}
gateway:
  base_url: {gateway}
  account: {DEFAULT_ACCOUNT}
  authkey: {DEFAULT_AUTHKEY}
  rate_limit: null
polling: {{replies: 1h, reports: 1h, balance: 1h}}
contacts:
  alice: "{ALICE}"
inputs:
  am:
    type: alertmanager
    auth: {{bearer: "{TOKEN}"}}
rules:
  - name: page
    match: {{kind: alert, source: am}}
    sms:
      to: [alice]
      repeat_interval: 0s
      template: "{{{{ labels.alertname }}}}"
""")
    return config


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    async with Simulator(SimulatorSettings(report_delay=0, rate_limit=None)) as sim:
        yield sim


@pytest.fixture(params=["sqlite", "postgresql"])
async def instances(
    request: pytest.FixtureRequest, tmp_path: Path, simulator: Simulator
) -> AsyncIterator[list[Daemon]]:
    """The smsbridge instances the two peers notify: on PostgreSQL one per peer; on SQLite
    (one daemon per file) both peers notify the one."""
    if request.param == "sqlite":
        stores = [f"{{path: {tmp_path / 'outbox.sqlite3'}}}"]
    else:
        url = request.getfixturevalue("pg_url")
        stores = [f'{{url: "{url}"}}'] * 2
    daemons = []
    try:
        for index, store in enumerate(stores):
            config = daemon_config(tmp_path / f"instance{index}", store, simulator.url)
            daemon = Daemon(load_settings(config))
            await daemon.start()
            daemons.append(daemon)
        yield daemons * (2 // len(daemons))
    finally:
        for daemon in daemons:
            await daemon.stop()


def peer_config(url: str) -> str:
    return f"""
route:
  receiver: smsbridge
  group_by: [team]
  group_wait: 200ms
  group_interval: 1h
  repeat_interval: 1h
receivers:
  - name: smsbridge
    webhook_configs:
      - url: {url}/hooks/am
        send_resolved: false
        http_config:
          authorization: {{credentials: "{TOKEN}"}}
"""


@pytest.fixture
def peers(tmp_path: Path, instances: list[Daemon]) -> Iterator[list[str]]:
    """Two clustered peers; the second joins the first. A peer waits only 1 ms for those
    before it and gossips rarely, so both send the notification (as after a partition)."""
    first = free_port()
    common = [
        "--cluster.peer-timeout=1ms",
        "--cluster.gossip-interval=5s",
        "--cluster.pushpull-interval=5s",
        "--cluster.settle-timeout=1s",
        "--cluster.probe-interval=200ms",
    ]
    with ExitStack() as stack:
        urls = [
            stack.enter_context(
                running_alertmanager(
                    tmp_path / f"peer{index}",
                    peer_config(instances[index].url),
                    [
                        f"--cluster.listen-address=127.0.0.1:{port}",
                        f"--cluster.advertise-address=127.0.0.1:{port}",
                        f"--cluster.peer=127.0.0.1:{first}",
                        *common,
                    ],
                )
            )
            for index, port in enumerate((first, free_port()))
        ]
        yield urls


async def post(am: str, names: list[str], starts: str) -> None:
    await post_alerts(
        am, [{"labels": {"alertname": name, "team": "db"}, "startsAt": starts} for name in names]
    )


async def delivered(am: str) -> float:
    """Webhook notifications this peer sent (its own metric)."""
    async with aiohttp.ClientSession() as http, http.get(f"{am}/metrics") as response:
        page = await response.text()
    found = re.search(
        r'^alertmanager_notifications_total\{integration="webhook"[^}]*\} (\S+)$', page, re.M
    )
    return float(found.group(1)) if found else 0.0


async def test_two_peers_deliver_and_each_alert_pages_once(
    instances: list[Daemon], peers: list[str], simulator: Simulator
) -> None:
    starts = datetime.now(UTC).isoformat()
    await asyncio.gather(
        post(peers[0], ["DiskFull"], starts),
        post(peers[1], ["DiskFull", "DiskSlow"], starts),
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while not (await delivered(peers[0]) >= 1 and await delivered(peers[1]) >= 1):
        assert loop.time() < deadline, "both peers should have notified"
        await asyncio.sleep(0.1)
    gateway = simulator
    await gateway.state.wait_for(lambda s: len(s.messages) >= 2, timeout=10)
    for daemon in {id(d): d for d in instances}.values():
        await daemon.processor.drain()
    await asyncio.sleep(0.3)  # nothing to await: a duplicate would be sent by now
    assert sorted(m.content.rsplit(" ", 1)[-1] for m in gateway.state.messages) == [
        "DiskFull",
        "DiskSlow",
    ]
