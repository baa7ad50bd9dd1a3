"""Paging from chat: `sms ack N`, `sms close N`, `sms incidents`, `sms oncall`, answered in the
thread the command came from, for allowed users only."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from bridge.intake.chatops import ChatOps, Command, parse
from bridge.plugin.chat import CommandPolicy
from bridge.runtime.daemon import Daemon
from bridge.testing import DaemonFactory, post_json
from tests.intake.test_chatops import ChatFake, command
from tests.paging.test_e2e import has, incident_state, notification, sent_to, step_timers

A, B = "15102110086", "15102110087"
PAGE = "[#1] DiskFull - reply 1a to ack, 1c to close, 1e to escalate"
START = date(2026, 1, 1)
_fingerprints = itertools.count(200)


@pytest.fixture
async def chat() -> AsyncIterator[tuple[ChatFake, str]]:
    fake = ChatFake()
    app = web.Application()
    app.router.add_post("/post", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield fake, f"http://127.0.0.1:{runner.addresses[0][1]}/post"
    await runner.cleanup()


def config(url: str) -> str:
    return f"""
polling: {{replies: 1h, reports: 1h, balance: 1h}}
dispatch: {{backoff_max: 50ms}}
inputs:
  am: {{type: alertmanager, allow_unauthenticated: true}}
outputs:
  chat: {{type: http_callback, url: "{url}", secret: s3cret-s3cret}}
contacts:
  alice: {{number: "{A}", name: Alice}}
  bob: {{number: "{B}", name: Bob}}
oncall:
  schedules:
    primary:
      timezone: UTC
      rotation: {{members: [alice, bob], shift: 1d, handoff: "00:00", start: {START}}}
  policies:
    ops:
      steps:
        - {{notify: [alice]}}
        - {{notify: [bob], after: 1h}}
      report_timeout: 1h
rules:
  - name: critical
    match: {{kind: alert, labels: {{severity: critical}}}}
    page: {{policy: ops}}
"""


def allow(daemon: Daemon, **policy: Any) -> None:
    chatops = daemon.processor.chatops
    assert chatops is not None
    daemon.processor.chatops = ChatOps(
        chatops.directory, {"slack-in": CommandPolicy(**policy)}, chatops.balance
    )


async def paged(daemon: Daemon) -> None:
    assert daemon.simulator is not None
    fingerprint = f"{next(_fingerprints):016x}"
    assert (await post_json(daemon, "/hooks/am", notification("firing", fingerprint)))[0] == 200
    await daemon.simulator.state.wait_for(has(1))
    assert sent_to(daemon.simulator.state) == [(A, PAGE)]


async def test_ack_from_chat_stops_paging_and_tells_who_was_paged(
    smsbridge_daemon: DaemonFactory, chat: tuple[ChatFake, str]
) -> None:
    fake, url = chat
    daemon = await smsbridge_daemon(config(url))
    allow(daemon, allow_users=["U1"])
    await paged(daemon)
    await daemon.processor.run_events([command("incidents", thread="i")])
    (listed,) = await fake.until("i", "#1")
    assert listed.startswith("#1 DiskFull: triggered (opened ")

    await daemon.processor.run_events([command("ack 1", thread="a")])
    assert await fake.until("a", "#1") == ["acknowledged #1 DiskFull"]
    assert await incident_state(daemon) == "acknowledged"
    assert await step_timers(daemon) == 0  # bob will not be paged
    assert daemon.simulator is not None
    await daemon.simulator.state.wait_for(has(2))
    assert sent_to(daemon.simulator.state)[1] == (A, "ops-anna acknowledged #1 DiskFull")
    await daemon.processor.run_events([command("incidents", thread="j")])
    (listed,) = await fake.until("j", "#1")
    assert listed.startswith("#1 DiskFull: acknowledged by ops-anna (opened ")


async def test_close_from_chat_resolves_once(
    smsbridge_daemon: DaemonFactory, chat: tuple[ChatFake, str]
) -> None:
    fake, url = chat
    daemon = await smsbridge_daemon(config(url))
    allow(daemon, allow_users=["*"])
    await paged(daemon)
    await daemon.processor.run_events([command("close #1", thread="c")])
    assert await fake.until("c", "#1") == ["resolved #1 DiskFull"]
    assert await incident_state(daemon) == "resolved"
    await daemon.processor.run_events([command("close 1", thread="d")])
    assert await fake.until("d", "#1") == ["#1 DiskFull is already resolved"]
    await daemon.processor.run_events([command("ack 9", thread="e")])
    assert await fake.until("e", "#9") == ["no incident #9"]
    await daemon.processor.run_events([command("incidents", thread="f")])
    assert await fake.until("f", "incidents") == ["no open incidents"]
    assert daemon.simulator is not None
    await daemon.simulator.state.wait_for(has(2))
    assert sent_to(daemon.simulator.state)[1:] == [(A, "ops-anna resolved #1 DiskFull")]


async def test_oncall_names_who_is_on_call_and_the_next_handoff(
    smsbridge_daemon: DaemonFactory, chat: tuple[ChatFake, str]
) -> None:
    fake, url = chat
    daemon = await smsbridge_daemon(config(url))
    allow(daemon, allow_users=["*"])
    today = datetime.now(UTC).date()
    now, then = ("alice", "bob") if (today - START).days % 2 == 0 else ("bob", "alice")
    handoff = datetime.combine(today + timedelta(days=1), time(), UTC)
    await daemon.processor.run_events([command("oncall", thread="o")])
    assert await fake.until("o", "primary") == [
        f"primary: {now}; next {then} from {handoff:%Y-%m-%d %H:%M} UTC"
    ]


async def test_users_not_allowed_change_nothing(
    smsbridge_daemon: DaemonFactory, chat: tuple[ChatFake, str]
) -> None:
    fake, url = chat
    daemon = await smsbridge_daemon(config(url))
    allow(daemon, allow_users=["someone-else"])
    await paged(daemon)
    for verb in ("ack 1", "close 1", "incidents", "oncall"):
        thread = verb.split()[0]
        await daemon.processor.run_events([command(verb, thread=thread)])
        assert await fake.until(thread, "not allowed") == [
            "not allowed: ops-anna may not use paging commands from here"
        ]
    assert await incident_state(daemon) == "triggered"


async def test_without_oncall_paging_commands_say_so(
    smsbridge_daemon: DaemonFactory, chat: tuple[ChatFake, str]
) -> None:
    fake, url = chat
    daemon = await smsbridge_daemon(
        f'outputs:\n  chat: {{type: http_callback, url: "{url}", secret: s3cret-s3cret}}\n'
    )
    allow(daemon, allow_users=["*"])
    await daemon.processor.run_events([command("ack 1")])
    assert await fake.until("t1", "paging") == ["paging is not configured (no oncall section)"]


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("ack 3", Command("ack", incident=3)),
        ("close #12", Command("close", incident=12)),
        ("incidents", Command("incidents")),
        ("oncall", Command("oncall")),
        ("ack", Command("ack", problem="usage: sms ack <incident>, e.g. sms ack 3")),
        # A contact or group may be called `oncall` or `ack`: with text after, it is texted.
        ("oncall disk full", Command("send", target="oncall", text="disk full")),
        ("ack the disk", Command("send", target="ack", text="the disk")),
    ],
)
def test_paging_verbs_parse_in_their_exact_shapes(text: str, parsed: Command) -> None:
    assert parse(text) == parsed


@given(st.sampled_from(["ack", "ACK", "close", "Close"]), st.integers(0, 10**9), st.booleans())
def test_any_incident_number_is_read(verb: str, number: int, hashed: bool) -> None:
    found = parse(f"{verb} {'#' if hashed else ''}{number}")
    assert (found.verb, found.incident, found.problem) == (verb.lower(), number, "")
