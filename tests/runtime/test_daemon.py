"""The daemon in-process: events in, SMS out at the simulator, replies and reports back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.events import Event, EventKind, Status
from bridge.plugins.c123.simulator import SimulatorSettings
from bridge.runtime.daemon import Daemon
from bridge.runtime.settings import load_settings

A, B = "15102110086", "15102110087"


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"store:\n  path: {tmp_path / 'outbox.sqlite3'}\nserver:\n  listen: 127.0.0.1:0\n"
        "polling:\n  replies: 1h\n  reports: 1h\n  balance: 1h\n" + body
    )
    return path


RULES = f"""
contacts:
  alice: "{A}"
  bob: "{B}"
rules:
  - name: page
    match: {{kind: alert}}
    sms:
      to: [alice]
      template: "{{{{ status }}}} {{{{ labels.alertname }}}}"
  - name: replies-to-bob
    match: {{kind: reply}}
    sms:
      to: [bob]
      template: "reply about {{{{ labels.alertname }}}}: {{{{ text }}}}"
"""


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    settings = load_settings(write(tmp_path, RULES))
    daemon = Daemon(settings, simulator_settings=SimulatorSettings(report_delay=0, rate_limit=None))
    await daemon.start()
    yield daemon
    await daemon.stop()


def alert(name: str, status: Status = Status.FIRING) -> Event:
    return Event(
        kind=EventKind.ALERT,
        source="test",
        labels={"alertname": name},
        fingerprint=f"fp-{name}",
        status=status,
    )


async def test_an_alert_becomes_an_sms(daemon: Daemon) -> None:
    """A submitted alert is committed, then sent to the rule's number at the gateway."""
    assert await daemon.processor.run_events([alert("DiskFull")]) == 1
    assert daemon.simulator is not None
    await daemon.simulator.state.wait_for(lambda s: len(s.messages) == 1)
    (message,) = daemon.simulator.state.messages
    assert (message.mobile, message.content) == (A, "firing DiskFull")


async def test_a_reply_comes_back_with_the_alert_context(daemon: Daemon) -> None:
    """A reply from the paged number is an event carrying the original alert's labels."""
    assert daemon.simulator is not None
    await daemon.processor.run_events([alert("DiskFull")])
    await daemon.simulator.state.wait_for(lambda s: len(s.messages) == 1)
    daemon.simulator.state.inject_reply(A, "ack, on it")
    await daemon.poller.poll_replies()
    await daemon.processor.drain()
    await daemon.simulator.state.wait_for(lambda s: len(s.messages) == 2)
    assert daemon.simulator.state.messages[1].content == "reply about DiskFull: ack, on it"
    assert daemon.simulator.state.messages[1].mobile == B


async def test_delivery_reports_update_the_job(daemon: Daemon) -> None:
    """A delivery report is matched to its job by msgid and number."""
    assert daemon.simulator is not None
    daemon.simulator.state.set_carrier_codes({A: "UNDELIV"})
    await daemon.processor.run_events([alert("DiskFull")])
    await daemon.simulator.state.wait_for(lambda s: len(s.messages) == 1)
    await daemon.dispatcher.stop(grace=5)  # the worker records the outcome before it stops
    await daemon.poller.poll_reports()
    await daemon.processor.drain()
    row = await daemon.store.read(
        lambda c: c.execute("SELECT delivery, carrier_code FROM jobs").fetchone()
    )
    assert (row["delivery"], row["carrier_code"]) == ("failed", "UNDELIV")


async def test_health_ready_and_metrics(daemon: Daemon) -> None:
    """/healthz, /readyz and /metrics answer on the daemon's port."""
    import aiohttp

    await daemon.poller.poll_balance()

    await daemon.processor.drain()
    async with aiohttp.ClientSession() as http:
        async with http.get(daemon.url + "/healthz") as response:
            assert response.status == 200
        async with http.get(daemon.url + "/readyz") as response:
            assert (response.status, await response.json()) == (
                200,
                {"ready": True, "problems": {}},
            )
        async with http.get(daemon.url + "/metrics") as response:
            text = await response.text()
            assert "smsbridge_gateway_balance_yuan 100.0" in text
        async with http.get(daemon.url + "/hooks/nope") as response:
            assert response.status == 404
            assert (await response.json())["error"] == "no such path /hooks/nope"


async def test_low_balance_becomes_a_system_event(tmp_path: Path) -> None:
    """A balance below the threshold is a system event a rule can route (once per crossing)."""
    body = f"""
contacts:
  alice: "{A}"
rules:
  - name: balance
    match: {{kind: system, labels: {{alertname: SmsBalanceLow}}}}
    sms: {{to: [alice], template: "{{{{ text }}}}"}}
"""
    path = write(tmp_path, body)
    path.write_text(
        path.read_text().replace("  balance: 1h\n", "  balance: 1h\n  low_balance: 500\n")
    )
    daemon = Daemon(
        load_settings(path), simulator_settings=SimulatorSettings(report_delay=0, rate_limit=None)
    )
    await daemon.start()
    try:
        assert daemon.simulator is not None
        await daemon.poller.poll_balance()
        await daemon.processor.drain()
        await daemon.poller.poll_balance()  # still low: not reported twice
        await daemon.simulator.state.wait_for(lambda s: len(s.messages) == 1)
        await daemon.dispatcher.stop(grace=5)
        (message,) = daemon.simulator.state.messages
        assert message.content == "SMS balance 100.000 is below 500"
    finally:
        await daemon.stop()


async def test_config_secrets_are_scrubbed_from_logs(tmp_path: Path) -> None:
    """A secret from the config that ends up in a log line is redacted there."""
    import io
    import json

    from bridge.logging import configure_logging

    secret = "SuperSecretCallbackKey42"
    path = write(
        tmp_path,
        f"""
outputs:
  cb: {{type: http_callback, url: "http://127.0.0.1:9/x", secret: {secret}}}
""",
    )
    stream = io.StringIO()
    configure_logging(stream, json=True)
    daemon = Daemon(
        load_settings(path), simulator_settings=SimulatorSettings(report_delay=0, rate_limit=None)
    )
    await daemon.start()
    try:
        daemon.log.warning("careless_event", detail=f"token={secret}")
    finally:
        await daemon.stop()
        configure_logging(io.StringIO(), json=True)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    (careless,) = [line for line in lines if line["event"] == "careless_event"]
    assert careless["detail"] == "token=<redacted>"
    assert secret not in stream.getvalue()
