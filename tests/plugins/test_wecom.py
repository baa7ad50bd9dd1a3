"""WeCom group robot: text posts within 2048 bytes, errcodes classified, the key kept secret."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from pytest_aiohttp import AiohttpServer

from bridge.config import ConfigError
from bridge.events import Event, EventKind
from bridge.plugin.base import Job, OutcomeKind, PluginContext
from bridge.plugin.registry import OUTPUTS, Registry
from bridge.plugins.c123.simulator import SimulatorSettings
from bridge.plugins.wecom import WecomOutput, WecomOutputConfig, split_bytes
from bridge.runtime.daemon import Daemon
from bridge.runtime.settings import load_settings

PAYLOADS = Path(__file__).parent / "payloads"
KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
ALICE = "15102110086"
LIMIT = 2048


def payload(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / f"wecom_{name}.json").read_bytes())
    return data


@dataclass
class FakeWecom:
    """A group robot webhook: checks the key and the text message as WeCom documents them,
    records accepted contents, and answers with the documented payloads (scripted ones first)."""

    url: str = ""
    # (HTTP status, payload name or "" for a proxy's HTML page), answered before the default.
    script: list[tuple[int, str]] = field(default_factory=list)
    contents: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, request: web.Request) -> web.Response:
        if request.query.get("key") != KEY:
            return web.json_response(payload("send_93000"))
        body = await request.json()
        documented = payload("text")
        if body.get("msgtype") != "text" or not set(body["text"]) <= set(documented["text"]):
            self.violations.append(f"not a documented text message: {body}")
        content = body["text"].get("content", "")
        if not 0 < len(content.encode()) <= LIMIT:
            self.violations.append(f"content of {len(content.encode())} bytes")
        if self.script:
            status, name = self.script.pop(0)
            if not name:
                return web.Response(status=status, text="<html>Bad Gateway</html>")
            return web.json_response(payload(name), status=status)
        self.contents.append(content)
        self.changed.set()
        return web.json_response(payload("send_ok"))

    async def until(self, predicate: Callable[[list[str]], bool]) -> None:
        """Wait (at most 10 s) until the recorded contents satisfy `predicate`."""
        async with asyncio.timeout(10):
            while not predicate(self.contents):
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def fake(aiohttp_server: AiohttpServer) -> FakeWecom:
    robot = FakeWecom()
    app = web.Application()
    app.router.add_post("/cgi-bin/webhook/send", robot.send)
    server = await aiohttp_server(app)
    robot.url = str(server.make_url("/cgi-bin/webhook/send"))
    return robot


def output(fake: FakeWecom, http_session: aiohttp.ClientSession, **options: Any) -> WecomOutput:
    config = {"key": KEY, "api_url": fake.url, "rate_limit": 1000, **options}
    ctx = PluginContext(name="wx", http=http_session, log=structlog.get_logger())
    return WecomOutput(WecomOutputConfig.model_validate(config), ctx)


def job(text: str = "DiskFull on db1 磁盘已满", thread: str = "") -> Job:
    return Job(id=3, recipient="", text=text, payload={"thread": thread})


async def test_post_sends_a_text_message(
    fake: FakeWecom, http_session: aiohttp.ClientSession
) -> None:
    """A job is one text message with the robot's key; channel and thread change nothing."""
    (outcome,) = await output(fake, http_session).deliver([job(thread="1365")])
    assert (outcome.kind, outcome.ref) == (OutcomeKind.SENT, "")
    assert fake.contents == ["DiskFull on db1 磁盘已满"]
    assert fake.violations == []


async def test_long_text_is_split_by_bytes(
    fake: FakeWecom, http_session: aiohttp.ClientSession
) -> None:
    """2048 bytes, not characters: 1,500 Chinese characters (4,500 bytes) become 3 parts."""
    text = "磁盘使用率超过百分之九十五" * 115  # 1,495 characters, 4,485 bytes
    (outcome,) = await output(fake, http_session).deliver([job(text)])
    assert outcome.kind is OutcomeKind.SENT
    assert [c[-6:] for c in fake.contents] == [" (1/3)", " (2/3)", " (3/3)"]
    assert all(len(c.encode()) <= LIMIT for c in fake.contents)
    assert "".join(c[:-6] for c in fake.contents) == text
    assert fake.violations == []


async def test_long_text_is_truncated_when_asked(
    fake: FakeWecom, http_session: aiohttp.ClientSession
) -> None:
    """With split_long: false one part is posted, within 2048 bytes, saying what was cut."""
    (outcome,) = await output(fake, http_session, split_long=False).deliver([job("告警 " * 2000)])
    assert outcome.kind is OutcomeKind.SENT
    (content,) = fake.contents
    assert len(content.encode()) <= LIMIT
    assert content.endswith("more characters)")
    assert fake.violations == []


@pytest.mark.parametrize(
    ("status", "name", "kind", "after", "code", "words"),
    [
        (200, "send_45009", OutcomeKind.RETRY, 60.0, "429", "errcode 45009"),
        (200, "send_busy", OutcomeKind.RETRY, None, "503", "system busy"),
        (200, "send_93000", OutcomeKind.FAILED, None, "400", "invalid webhook url"),
        (502, "", OutcomeKind.RETRY, None, "502", "HTTP 502"),
    ],
)
async def test_refusals_are_classified(
    fake: FakeWecom,
    http_session: aiohttp.ClientSession,
    status: int,
    name: str,
    kind: OutcomeKind,
    after: float | None,
    code: str,
    words: str,
) -> None:
    """Throttling waits a minute, busy retries, other errcodes fail, a proxy's 502 retries."""
    fake.script = [(status, name)]
    (outcome,) = await output(fake, http_session).deliver([job()])
    assert (outcome.kind, outcome.retry_after, outcome.code) == (kind, after, code)
    assert words in outcome.reason
    assert KEY not in outcome.reason


async def test_the_key_never_shows(fake: FakeWecom, http_session: aiohttp.ClientSession) -> None:
    """A wrong key fails, a dead server retries, and an errmsg quoting the key is scrubbed."""
    other = KEY.replace("693a", "0000")
    (wrong,) = await output(fake, http_session, key=other).deliver([job()])
    assert (wrong.kind, wrong.code) == (OutcomeKind.FAILED, "400")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = f"http://127.0.0.1:{port}/cgi-bin/webhook/send"
    (unreachable,) = await output(fake, http_session, api_url=dead).deliver([job()])
    assert (unreachable.kind, unreachable.code) == (OutcomeKind.RETRY, "connection")
    echo = output(fake, http_session)
    refusal = echo._refusal(40008, f"invalid message type, request url ...?key={KEY}")
    reasons = [wrong.reason, unreachable.reason, refusal.reason]
    assert all(k not in r for k in (KEY, other) for r in reasons)
    assert "key=<redacted>" in refusal.reason


def registry() -> Registry:
    """The installed adapters plus wecom's, until pyproject.toml registers it."""
    found = Registry.discover()
    found.outputs["wecom"] = [EntryPoint("wecom", "bridge.plugins.wecom:WecomOutput", OUTPUTS)]
    return found


def test_config_takes_the_key_not_the_address(tmp_path: Path) -> None:
    """A pasted webhook address is refused with advice, and the report never repeats it."""
    path = tmp_path / "config.yaml"
    path.write_text("outputs:\n  wx: {type: wecom, key: '${WX_KEY}'}\n")
    address = f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY}"
    with pytest.raises(ConfigError) as bad:
        load_settings(path, environ={"WX_KEY": address}, registry=registry())
    assert "give only the key= value" in str(bad.value)
    assert KEY not in str(bad.value)
    config = WecomOutputConfig.model_validate({"key": KEY})
    assert config.rate_limit == pytest.approx(20 / 60)  # the robot's 20 messages a minute


@given(st.text(), st.integers(min_value=256, max_value=4096), st.booleans())
def test_byte_split_always_fits(text: str, limit: int, split: bool) -> None:
    """Every part fits the byte limit; truncating gives one part, splitting keeps every word."""
    parts = split_bytes(text, limit, split=split)
    assert all(len(part.encode()) <= limit for part in parts)
    if not split:
        assert len(parts) == 1
    elif len(parts) > 1:
        kept = "".join(part.rsplit(" (", 1)[0] for part in parts)
        assert "".join(kept.split()) == "".join(text.split())


def test_byte_split_refuses_a_limit_with_no_room() -> None:
    """A limit too small for text beside the part numbers is a programming error, not a hang."""
    with pytest.raises(ValueError, match="no room"):
        split_bytes("磁盘" * 50, 64)


# --- end to end -------------------------------------------------------------------------------


@pytest.fixture
async def daemon(tmp_path: Path, fake: FakeWecom) -> AsyncIterator[Daemon]:
    path = tmp_path / "config.yaml"
    path.write_text(f"""
server: {{listen: "127.0.0.1:0"}}
store: {{path: {tmp_path / "outbox.sqlite3"}}}
polling: {{replies: 1h, reports: 1h, balance: 1h}}
contacts:
  alice: "{ALICE}"
outputs:
  wx: {{type: wecom, key: "${{WX_KEY}}", api_url: "{fake.url}", rate_limit: 100}}
rules:
  - name: page
    match: {{kind: alert}}
    sms: {{to: [alice], template: "{{{{ labels.alertname }}}} {{{{ text }}}}"}}
    post: {{to: wx, template: "paged alice: {{{{ labels.alertname }}}} {{{{ text }}}}"}}
  - name: replies
    match: {{kind: reply}}
    post: {{to: wx, template: "alice about {{{{ labels.alertname }}}}: {{{{ text }}}}"}}
""")
    settings = load_settings(path, environ={"WX_KEY": KEY}, registry=registry())
    daemon = Daemon(settings, simulator_settings=SimulatorSettings(report_delay=0, rate_limit=None))
    await daemon.start()
    yield daemon
    await daemon.stop()


async def test_alert_posted_to_the_group_and_the_reply_follows(
    daemon: Daemon, fake: FakeWecom
) -> None:
    """An alert pages alice and is posted to the group; alice's SMS reply lands there too."""
    assert daemon.simulator is not None
    sim = daemon.simulator.state
    alert = Event(
        kind=EventKind.ALERT, source="test", labels={"alertname": "DiskFull"}, text="磁盘已满"
    )
    await daemon.processor.run_events([alert])
    await sim.wait_for(lambda s: len(s.messages) == 1, timeout=10)
    assert sim.messages[0].mobile == ALICE
    await fake.until(lambda contents: "paged alice: DiskFull 磁盘已满" in contents)
    sim.inject_reply(ALICE, "on my way")
    await daemon.poller.poll_replies()
    await daemon.processor.drain()
    await fake.until(lambda contents: "alice about DiskFull: on my way" in contents)
    assert fake.violations == []
