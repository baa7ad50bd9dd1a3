"""bridge.testing as an adapter author meets it: simulator, running daemons, capture, post_json."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import aiohttp
import pytest
import structlog
from aiohttp import web
from pydantic import SecretStr

from bridge.config import ConfigError, ConfigModel
from bridge.events import Event, EventKind
from bridge.plugin.base import Job, OutcomeKind, Parsed, PluginContext
from bridge.plugin.webhook import HttpInput
from bridge.plugins.c123 import C123Output
from bridge.plugins.c123.config import C123Config
from bridge.plugins.c123.simulator import DEFAULT_ACCOUNT, DEFAULT_AUTHKEY, Simulator
from bridge.testing import CapturingOutput, DaemonFactory, post_json

ALICE = "15102110086"
TOKEN = "hook-token-0123456789"
BEARER = {"Authorization": f"Bearer {TOKEN}"}

CONFIG = f"""
contacts:
  alice: "{ALICE}"
inputs:
  hook:
    type: webhook
    auth: {{token: {TOKEN}}}
outputs:
  chat:
    type: capture
rules:
  - name: to-chat
    match: {{kind: alert, labels: {{team: chat}}}}
    post: {{to: chat, template: "{{{{ labels.alertname }}}}: {{{{ text }}}}"}}
  - name: page
    match: {{kind: alert}}
    sms: {{to: [alice], template: "[{{{{ status }}}}] {{{{ labels.alertname }}}}"}}
"""


async def test_simulator_fixture_is_a_started_gateway(simulator: Simulator) -> None:
    """The simulator answers on a loopback port and records what an SMS output sends it."""
    assert simulator.url.startswith("http://127.0.0.1:")
    config = C123Config(
        base_url=simulator.url, account=DEFAULT_ACCOUNT, authkey=SecretStr(DEFAULT_AUTHKEY)
    )
    async with aiohttp.ClientSession() as http:
        output = C123Output(config, PluginContext("sms", http, structlog.get_logger()))
        (outcome,) = await output.deliver([Job(id=1, recipient=ALICE, text="hello")])
    assert outcome.kind is OutcomeKind.SENT
    assert [(m.mobile, m.content) for m in simulator.state.messages] == [(ALICE, "hello")]


async def test_daemon_routes_a_webhook_to_sms_and_capture(
    smsbridge_daemon: DaemonFactory, capture_output: CapturingOutput
) -> None:
    """A posted event is answered 200, sent as SMS to the simulator and posted to `capture`."""
    daemon = await smsbridge_daemon(CONFIG)
    status, body = await post_json(
        daemon,
        "/hooks/hook",
        {"labels": {"alertname": "DiskFull", "team": "chat"}, "message": "97% on /var"},
        BEARER,
    )
    assert (status, body) == (200, {"accepted": 1, "duplicate": False, "rejected": []})
    await capture_output.wait_for(1)
    assert capture_output.delivered[0].text == "DiskFull: 97% on /var"
    assert capture_output.delivered[0].payload["rule"] == "to-chat"
    assert (await post_json(daemon, "/hooks/hook", {"labels": {"alertname": "Ping"}}, BEARER))[
        0
    ] == 200
    assert daemon.simulator is not None
    await daemon.simulator.state.wait_for(lambda s: len(s.messages) == 1)
    assert daemon.simulator.state.messages[0].content == "[firing] Ping"
    assert daemon.simulator.state.messages[0].mobile == ALICE


async def test_daemon_defaults_are_filled_in(
    smsbridge_daemon: DaemonFactory, tmp_path: Path
) -> None:
    """Each daemon gets its own store under tmp_path, a free loopback port and the simulator."""
    first = await smsbridge_daemon("")
    second = await smsbridge_daemon("polling: {replies: 1h}")
    assert first.port != 0
    assert second.port != first.port
    assert first.url.startswith("http://127.0.0.1:")
    assert first.settings.config.store.path.parent.parent == tmp_path
    assert first.settings.config.store.path != second.settings.config.store.path
    assert second.settings.config.polling.replies.total_seconds() == 3600
    assert first.simulator is not None
    assert first.simulator is not second.simulator
    async with aiohttp.ClientSession() as http, http.get(second.url + "/healthz") as response:
        assert response.status == 200


async def test_given_settings_win_over_the_defaults(
    smsbridge_daemon: DaemonFactory, tmp_path: Path
) -> None:
    """A store path or listen address written in the config is kept."""
    store = tmp_path / "mine.sqlite3"
    daemon = await smsbridge_daemon(f"store: {{path: {store}}}\nserver: {{max_body: 2048}}")
    assert daemon.settings.config.store.path == store
    assert daemon.settings.config.server.max_body == 2048
    assert daemon.settings.config.server.listen == "127.0.0.1:0"


async def test_bad_config_raises_config_error(smsbridge_daemon: DaemonFactory) -> None:
    """A config the daemon would refuse raises ConfigError, each problem with file and line."""
    with pytest.raises(ConfigError) as caught:
        await smsbridge_daemon("inputs:\n  x: {type: no_such_type}\n")
    (issue,) = caught.value.issues
    assert issue.location().endswith("/config.yaml:2:13")  # as written: nothing moved
    assert issue.line == 2
    assert "unknown input type 'no_such_type'" in issue.message
    with pytest.raises(ConfigError, match="a rule needs an action"):
        await smsbridge_daemon("rules: [{name: r}]")


async def test_environ_is_used_for_secrets(smsbridge_daemon: DaemonFactory) -> None:
    """`environ=` stands in for the environment when the config reads ${NAME}."""
    config = "inputs:\n  hook:\n    type: webhook\n    auth: {token: '${HOOK_TOKEN}'}\n"
    daemon = await smsbridge_daemon(config, environ={"HOOK_TOKEN": TOKEN})
    assert (await post_json(daemon, "/hooks/hook", {"message": "x"}, BEARER))[0] == 200
    assert (await post_json(daemon, "/hooks/hook", {"message": "x"}))[0] == 401


class PingConfig(ConfigModel):
    """A ping input takes a word to put in the text."""

    word: str = "ping"


class PingInput(HttpInput[PingConfig]):
    """An input not behind any entry point: every POST is one alert saying the word."""

    type_name = "ping"
    config_class = PingConfig

    async def receive(self, request: web.Request) -> web.Response:
        return await self.accept(await request.read())

    def parse(self, body: bytes) -> Parsed:
        event = Event(
            kind=EventKind.ALERT,
            source=self.ctx.name,
            labels={"alertname": "Ping"},
            text=self.config.word,
        )
        return Parsed([event])


async def test_types_adds_classes_before_they_have_entry_points(
    smsbridge_daemon: DaemonFactory, capture_output: CapturingOutput
) -> None:
    """Classes given as `types=` are found by their type_name, with their options validated."""
    config = """
inputs:
  p: {type: ping, word: pong}
outputs:
  chat: {type: capture}
rules:
  - {name: r, match: {source: p}, post: {to: chat, template: "{{ text }}"}}
"""
    daemon = await smsbridge_daemon(config, types=[PingInput])
    assert (await post_json(daemon, "/hooks/p", {}))[0] == 200
    await capture_output.wait_for(1)
    assert capture_output.delivered[0].text == "pong"
    with pytest.raises(ConfigError, match="wrod: unknown key; did you mean 'word'"):
        await smsbridge_daemon("inputs:\n  p: {type: ping, wrod: x}\n", types=[PingInput])
    with pytest.raises(ConfigError, match="unknown input type 'ping'"):
        await smsbridge_daemon("inputs:\n  p: {type: ping}\n")


async def test_post_json_sends_bytes_as_they_are(smsbridge_daemon: DaemonFactory) -> None:
    """Bytes go out unchanged (for signatures); headers may replace the content type."""
    daemon = await smsbridge_daemon(CONFIG)
    assert (await post_json(daemon, "/hooks/hook", b'{"message": "raw"}', BEARER))[0] == 200
    text = {**BEARER, "content-type": "text/plain"}  # any case replaces the default
    status, body = await post_json(daemon, "/hooks/hook", b"hi", text)
    assert (status, body) == (
        415,
        {"error": "expected Content-Type: application/json, got text/plain"},
    )
    assert await post_json(daemon, "/hooks/nope", {}) == (
        404,
        {"error": "no such path /hooks/nope"},
    )


# --- the plugin in another project --------------------------------------------------------------

OUTSIDE_TEST = '''
"""An adapter package's tests, using only what the smsbridge pytest plugin provides."""

import aiohttp
import pytest

from bridge.testing import post_json

URLS = []


@pytest.mark.asyncio
async def test_one(smsbridge_daemon, simulator, capture_output):
    daemon = await smsbridge_daemon("outputs: {c: {type: capture}}")
    URLS.append(daemon.url)
    assert simulator.url != daemon.simulator.url
    status, _ = await post_json(daemon, "/hooks/none", {})
    assert status == 404


@pytest.mark.asyncio
async def test_two_daemon_of_test_one_was_stopped():
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as http, http.get(URLS[0] + "/healthz"):
            pass
'''


def registered() -> bool:
    return any(ep.value == "bridge.testing" for ep in entry_points(group="pytest11"))


def test_fixtures_work_in_a_project_of_its_own(tmp_path: Path) -> None:
    """Another project (no conftest, asyncio strict mode) gets working fixtures and teardown."""
    (tmp_path / "test_outside.py").write_text(textwrap.dedent(OUTSIDE_TEST))
    # Until the pytest11 entry point is installed, name the plugin; after, it loads by itself
    # (naming it as well would register it twice).
    load = [] if registered() else ["-p", "bridge.testing"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            *load,
            "-p",
            "no:cacheprovider",
            "-o",
            "asyncio_mode=strict",
            "-o",
            "asyncio_default_fixture_loop_scope=function",
            "-q",
            str(tmp_path / "test_outside.py"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_pytest11_entry_point_is_registered() -> None:
    """Installing smsbridge registers bridge.testing as the pytest plugin `smsbridge`."""
    if not registered():
        pytest.skip('pytest11 entry point not in pyproject.toml yet: smsbridge = "bridge.testing"')
    (ep,) = [ep for ep in entry_points(group="pytest11") if ep.value == "bridge.testing"]
    assert ep.name == "smsbridge"
