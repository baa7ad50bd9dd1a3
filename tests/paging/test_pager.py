"""Paging in a running daemon: what replies that are no command get, who may command, and the
`system` event when nobody acknowledges."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from bridge.events import Event, EventKind
from bridge.plugins.c123.simulator import GatewayState
from bridge.runtime.daemon import Daemon
from bridge.testing import DaemonFactory

A, B, C = "15102110086", "15102110087", "15102110088"
HELP = "Not a command. Reply with your page's code: 1a ack, 1c close, 1e escalate"
PAGE = "[#1] DiskFull - reply 1a to ack, 1c to close, 1e to escalate"


def config(steps: str, report_timeout: str = "1h") -> str:
    return f"""
polling: {{replies: 1h, reports: 1h, balance: 1h}}
dispatch: {{backoff_max: 50ms}}
contacts:
  alice: {{number: "{A}", name: Alice}}
  bob: {{number: "{B}", name: Bob}}
  carol: {{number: "{C}", name: Carol}}
oncall:
  help_per_day: 1
  policies:
    ops:
      steps: {steps}
      report_timeout: {report_timeout}
rules:
  - name: warning
    match: {{kind: alert, labels: {{severity: warning}}}}
    sms: {{to: [alice], template: "warning {{{{ labels.alertname }}}}"}}
  - name: critical
    match: {{kind: alert, labels: {{severity: critical}}}}
    page: {{policy: ops}}
  - name: replies
    match: {{kind: reply}}
    sms: {{to: [bob], template: "reply: {{{{ text }}}}", repeat_interval: 0s}}
  - name: system
    match: {{kind: system}}
    sms: {{to: [carol], template: "{{{{ text }}}}"}}
"""


def alert(name: str = "DiskFull", severity: str = "critical") -> Event:
    return Event(
        EventKind.ALERT,
        "test",
        labels={"alertname": name, "severity": severity},
        fingerprint=f"fp-{name}",
    )


def sent(state: GatewayState) -> list[tuple[str, str]]:
    return [(message.mobile, message.content) for message in state.messages]


def has(count: int) -> Callable[[GatewayState], bool]:
    return lambda state: len(state.messages) >= count


async def reply(daemon: Daemon, mobile: str, text: str) -> None:
    assert daemon.simulator is not None
    daemon.simulator.state.inject_reply(mobile, text)
    await daemon.poller.poll_replies()
    await daemon.processor.drain()


async def paged(smsbridge_daemon: DaemonFactory, steps: str, **options: str) -> Daemon:
    daemon = await smsbridge_daemon(config(steps, **options))
    assert daemon.simulator is not None
    assert await daemon.processor.run_events([alert()]) == 1
    await daemon.simulator.state.wait_for(has(1))
    assert sent(daemon.simulator.state) == [(A, PAGE)]
    return daemon


async def test_a_mistyped_command_gets_help_once_and_is_forwarded(
    smsbridge_daemon: DaemonFactory,
) -> None:
    """`1x` from a paged number is forwarded as before, and answered with help at most
    help_per_day times; an ordinary message gets no answer at all."""
    daemon = await paged(smsbridge_daemon, "[{notify: [alice]}, {notify: [bob], after: 1h}]")
    assert daemon.simulator is not None
    state = daemon.simulator.state
    await reply(daemon, A, "1x")
    await state.wait_for(has(3))
    assert sorted(sent(state)[1:]) == sorted(
        [
            (A, HELP),
            (B, "reply: 1x"),
        ]
    )
    await reply(daemon, A, "2x")  # over help_per_day: forwarded only
    await reply(daemon, A, "on it, the disk is full")  # a message: forwarded only
    await state.wait_for(has(5))
    assert sent(state)[3:] == [(B, "reply: 2x"), (B, "reply: on it, the disk is full")]
    await daemon.dispatcher.stop(grace=5)  # nothing else was queued behind them
    rows = await daemon.store.read(lambda c: c.execute("SELECT COUNT(*) AS n FROM jobs").fetchone())
    assert rows["n"] == 5


async def test_a_command_from_a_number_never_paged_is_an_ordinary_reply(
    smsbridge_daemon: DaemonFactory,
) -> None:
    """`ack` from carol (never paged) is forwarded like any reply: no answer, incident as it was."""
    daemon = await paged(smsbridge_daemon, "[{notify: [alice]}, {notify: [bob], after: 1h}]")
    assert daemon.simulator is not None
    await reply(daemon, C, "ack")
    await daemon.simulator.state.wait_for(has(2))
    assert sent(daemon.simulator.state)[1] == (B, "reply: ack")

    def state(conn: sqlite3.Connection) -> str:
        return str(conn.execute("SELECT state FROM incidents").fetchone()["state"])

    assert await daemon.store.read(state) == "triggered"


async def test_close_by_reply_resolves_and_tells_the_others(
    smsbridge_daemon: DaemonFactory,
) -> None:
    """alice and bob paged together; alice's `close` resolves it, bob is told, alice answered."""
    daemon = await smsbridge_daemon(config("[{notify: [alice, bob]}]"))
    assert daemon.simulator is not None
    state = daemon.simulator.state
    await daemon.processor.run_events([alert()])
    await state.wait_for(has(2))
    await reply(daemon, A, "关闭")
    await state.wait_for(has(4))
    assert sorted(sent(state)[2:]) == [
        (A, "resolved #1 DiskFull"),
        (B, "Alice resolved #1 DiskFull"),
    ]


async def test_nobody_acknowledging_raises_a_system_event(smsbridge_daemon: DaemonFactory) -> None:
    """After the last step (and its wait) goes unanswered, a `system` event goes to the rules."""
    daemon = await paged(smsbridge_daemon, "[{notify: [alice]}]", report_timeout="1s")
    assert daemon.simulator is not None
    await daemon.simulator.state.wait_for(has(2))
    assert sent(daemon.simulator.state)[1] == (
        C,
        "Nobody acknowledged #1 DiskFull after every step",
    )


async def test_an_alert_sms_before_a_page_leaves_its_code_1(
    smsbridge_daemon: DaemonFactory,
) -> None:
    """An ordinary alert SMS takes no reply code, so the page after it still says `1a`, and
    `1a` acknowledges it."""
    daemon = await smsbridge_daemon(config("[{notify: [alice]}, {notify: [bob], after: 1h}]"))
    assert daemon.simulator is not None
    state = daemon.simulator.state
    await daemon.processor.run_events([alert("CpuHigh", "warning")])
    await state.wait_for(has(1))
    await daemon.processor.run_events([alert()])
    await state.wait_for(has(2))
    assert sent(state) == [(A, "warning CpuHigh"), (A, PAGE)]
    await reply(daemon, A, "1a")
    await state.wait_for(has(3))
    assert sent(state)[2] == (A, "acknowledged #1 DiskFull")
