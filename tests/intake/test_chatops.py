"""Chat commands end to end in the daemon: send, balance, status, help, refusals, reply codes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from bridge.intake.chatops import parse
from bridge.plugin.chat import command_event, split_text
from bridge.plugins.c123.simulator import SimulatorSettings
from bridge.runtime.daemon import Daemon
from bridge.runtime.settings import load_settings

ALICE, BOB = "15102110086", "15102110087"


class ChatFake:
    """Stands in for a chat platform: records what the callback output posts, by thread."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.changed = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.posts.append(json.loads(await request.read()))
        self.changed.set()
        return web.json_response({"ok": True})

    async def until(self, thread: str, text: str) -> list[str]:
        """Wait until a post in `thread` contains `text`; returns that thread's posts."""
        async with asyncio.timeout(10):
            while not any(text in t for t in self.in_thread(thread)):
                self.changed.clear()
                await self.changed.wait()
        return self.in_thread(thread)

    def in_thread(self, thread: str) -> list[str]:
        return [p["text"] for p in self.posts if p.get("thread") == thread]


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


@pytest.fixture
async def daemon(tmp_path: Path, chat: tuple[ChatFake, str]) -> AsyncIterator[Daemon]:
    _, url = chat
    config = tmp_path / "config.yaml"
    config.write_text(f"""
server: {{listen: "127.0.0.1:0"}}
store: {{path: {tmp_path / "outbox.sqlite3"}}}
polling: {{replies: 1h, reports: 1h, balance: 1h}}
contacts:
  alice: "{ALICE}"
  bob: {{number: "{BOB}", name: Bob}}
groups:
  team: [alice, bob]
outputs:
  chat: {{type: http_callback, url: "{url}", secret: s3cret-s3cret}}
  lobby: {{type: http_callback, url: "{url}", secret: s3cret-s3cret}}
conversations:
  default: {{output: lobby, channel: lobby, thread: default}}
  report_deliveries: true
""")
    daemon = Daemon(
        load_settings(config), simulator_settings=SimulatorSettings(report_delay=0, rate_limit=None)
    )
    await daemon.start()
    yield daemon
    await daemon.stop()


def command(text: str, thread: str = "t1", user: str = "U1") -> Any:
    return command_event(
        source="slack-in",
        platform="test",
        text=text,
        user_id=user,
        user_name="ops-anna",
        reply_output="chat",
        channel="C1",
        thread=thread,
    )


def allow(daemon: Daemon, **policy: Any) -> None:
    from bridge.intake.chatops import ChatOps
    from bridge.plugin.chat import CommandPolicy

    assert daemon.processor.chatops is not None
    chatops = daemon.processor.chatops
    daemon.processor.chatops = ChatOps(
        chatops.directory, {"slack-in": CommandPolicy(**policy)}, chatops.balance
    )


async def test_send_answers_in_the_thread_and_the_reply_comes_back(
    daemon: Daemon, chat: tuple[ChatFake, str]
) -> None:
    """`sms alice ...` texts alice, answers in the thread, and alice's reply lands there too."""
    fake, _ = chat
    allow(daemon, allow_users=["*"])
    sim = daemon.simulator
    assert sim is not None
    await daemon.processor.run_events([command("alice 你好, disk is full on db1")])
    await sim.state.wait_for(lambda s: len(s.messages) == 1)
    assert (sim.state.messages[0].mobile, sim.state.messages[0].content) == (
        ALICE,
        "你好, disk is full on db1",
    )
    (answer,) = await fake.until("t1", "SMS #")
    assert "to alice (151****0086): 1 segment(s), 0.10 yuan" in answer
    assert [p["recipient"] for p in fake.posts if p["thread"] == "t1"] == ["C1"]
    sim.state.inject_reply(ALICE, "on my way")
    await daemon.poller.poll_replies()
    await daemon.processor.drain()
    assert "alice: on my way" in await fake.until("t1", "on my way")


async def test_group_status_balance_and_help(daemon: Daemon, chat: tuple[ChatFake, str]) -> None:
    """A group is texted per member; status, balance and help answer in the thread."""
    fake, _ = chat
    allow(daemon, allow_users=["U1"])
    await daemon.processor.run_events([command("team hello all")])
    (answer,) = await fake.until("t1", "SMS #")
    assert "Bob (151****0087)" in answer
    job = answer.split("#", 1)[1].split(" ", 1)[0]
    sim = daemon.simulator
    assert sim is not None
    await sim.state.wait_for(lambda s: len(s.messages) == 2)
    await daemon.dispatcher.stop(grace=5)
    daemon.dispatcher.start()
    for text, thread in ((f"status {job}", "s"), ("balance", "b"), ("help", "h")):
        await daemon.processor.run_events([command(text, thread=thread)])
    assert (await fake.until("s", "SMS #"))[0].startswith(f"SMS #{job} to alice: sent")
    assert await fake.until("b", "balance") == ["SMS balance: 99.800 yuan"]
    assert (await fake.until("h", "sms"))[0].startswith("sms <number|contact|group> <text>")


@pytest.mark.parametrize(
    ("policy", "text", "answer"),
    [
        ({}, "alice hi", "not allowed: ops-anna may not send SMS from here"),
        (
            {"allow_users": ["*"]},
            "alise hi",
            "unknown contact or group 'alise'; did you mean 'alice'?",
        ),
        ({"allow_users": ["*"]}, "12345 hi", "'12345' is not a mainland mobile number"),
        (
            {"allow_users": ["*"], "allow_recipients": ["bob"]},
            "alice hi",
            "not allowed: alice is not on this channel's recipient list",
        ),
        (
            {"allow_users": ["*"], "user_cap_per_hour": 1},
            "team hi",
            "over your limit of 1 SMS an hour (0 sent); try later",
        ),
        ({"allow_users": ["*"]}, "alice", "usage: sms <number|contact|group> <text>"),
    ],
)
async def test_refusals_are_answered_and_send_nothing(
    daemon: Daemon, chat: tuple[ChatFake, str], policy: dict[str, Any], text: str, answer: str
) -> None:
    """Each refused command gets a clear answer in its thread, and no SMS goes out."""
    fake, _ = chat
    allow(daemon, **policy)
    await daemon.processor.run_events([command(text)])
    (post,) = await fake.until("t1", answer)
    assert answer in post
    assert daemon.simulator is not None
    assert daemon.simulator.state.messages == []


async def test_reply_codes_pick_the_thread(daemon: Daemon, chat: tuple[ChatFake, str]) -> None:
    """Two threads texting one number: the second SMS carries #2; replies follow the codes."""
    fake, _ = chat
    allow(daemon, allow_users=["*"])
    sim = daemon.simulator
    assert sim is not None
    await daemon.processor.run_events([command("alice first question", thread="t1")])
    await sim.state.wait_for(lambda s: len(s.messages) == 1)
    await daemon.processor.run_events([command("alice second question", thread="t2")])
    await sim.state.wait_for(lambda s: len(s.messages) == 2)
    assert sim.state.messages[1].content == "second question #2"
    for reply in ("answer to one #1", "answer to two", "which one? #7"):
        sim.state.inject_reply(ALICE, reply)
    await daemon.poller.poll_replies()
    await daemon.processor.drain()
    assert "alice: answer to one #1" in await fake.until("t1", "answer to one")
    assert "alice: answer to two" in await fake.until("t2", "answer to two")
    assert "alice: which one? #7" in await fake.until("default", "which one")


async def test_delivery_reports_are_posted_when_configured(
    daemon: Daemon, chat: tuple[ChatFake, str]
) -> None:
    """With report_deliveries on, the delivery report of a chat SMS appears in its thread."""
    fake, _ = chat
    allow(daemon, allow_users=["*"])
    sim = daemon.simulator
    assert sim is not None
    sim.state.set_carrier_codes({BOB: "UNDELIV"})
    await daemon.processor.run_events([command("bob are you there")])
    await sim.state.wait_for(lambda s: len(s.messages) == 1)
    await daemon.dispatcher.stop(grace=5)
    await daemon.poller.poll_reports()
    await daemon.processor.drain()
    daemon.dispatcher.start()
    assert "Bob: failed: UNDELIV" in await fake.until("t1", "UNDELIV")


@given(st.text())
def test_parse_never_raises(text: str) -> None:
    """Any text parses into a command or a usage problem."""
    parsed = parse(text)
    assert parsed.verb in ("help", "balance", "status", "send")


@given(st.text(min_size=1, max_size=3000), st.integers(min_value=40, max_value=500))
def test_split_parts_fit_and_keep_the_text(text: str, limit: int) -> None:
    """Every part fits the limit, and the parts hold all of the text's words in order."""
    parts = split_text(text, limit)
    assert all(len(part) <= limit for part in parts)
    if len(parts) == 1:
        assert parts[0] == text
    else:
        joined = "".join(p.rsplit(" (", 1)[0] for p in parts)
        assert "".join(joined.split()) == "".join(text.split())
