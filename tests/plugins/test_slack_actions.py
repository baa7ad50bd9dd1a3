"""Slack buttons: an incident's notice carries Ack / Close (block actions); a press, signed like
every Slack request, runs `sms ack N` in the message's thread; end to end against a fake Slack."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.events import EventKind
from bridge.plugin.base import Job, OutcomeKind
from bridge.plugins.c123.simulator import SimulatorSettings
from bridge.plugins.slack.actions import pressed
from bridge.runtime.daemon import Daemon
from bridge.runtime.settings import load_settings
from bridge.testing import RecordingSubmit, post_json
from tests.paging.test_e2e import has, incident_state, notification, sent_to
from tests.plugins.test_slack import (
    FORM,
    SECRET,
    TOKEN,
    Client,
    FakeSlack,
    Make,
    client,
    fake,
    form,
    make,
    recorder,
    registry,
    send,
    signed,
)

__all__ = ["client", "fake", "make", "recorder"]  # fixtures, used by name
ALICE = "15102110086"
CHANNEL = "C0SMSINBOX"


def block_action(
    value: str = "ack 3",
    action_id: str = "smsbridge_ack",
    message_ts: str = "1715000000.000001",
    thread_ts: str | None = None,
) -> dict[str, Any]:
    """A block_actions payload as Slack sends it when a button is pressed (trimmed)."""
    container: dict[str, Any] = {
        "type": "message",
        "message_ts": message_ts,
        "channel_id": CHANNEL,
        "is_ephemeral": False,
    }
    if thread_ts:
        container["thread_ts"] = thread_ts
    return {
        "type": "block_actions",
        "user": {"id": "U1", "username": "bob", "name": "bob", "team_id": "T1"},
        "api_app_id": "A1",
        "token": "legacy-verification-token",
        "container": container,
        "trigger_id": f"trigger-{message_ts}-{value}",
        "team": {"id": "T1", "domain": "ops"},
        "channel": {"id": CHANNEL, "name": "sms-inbox"},
        "message": {"type": "message", "ts": message_ts, "text": "#3 DiskFull: paging Alice"},
        "response_url": "https://hooks.slack.com/actions/T1/1/x",
        "actions": [
            {
                "action_id": action_id,
                "block_id": "b1",
                "text": {"type": "plain_text", "text": "Ack"},
                "value": value,
                "type": "button",
                "action_ts": "1715000001.000002",
            }
        ],
    }


def pressed_body(document: dict[str, Any]) -> bytes:
    return form({"payload": json.dumps(document)})


async def test_a_pressed_button_is_its_command_in_the_message_thread(
    client: Client, recorder: RecordingSubmit
) -> None:
    body = pressed_body(block_action(thread_ts="1714999999.000100"))
    status, text = await send(client, body, signed(body, FORM))
    assert (status, text) == (200, "")  # Slack shows nothing of it; the answer is posted
    ((event,), key, _) = recorder.calls[0]
    assert (event.kind, event.text) == (EventKind.COMMAND, "ack 3")
    assert event.labels["user"] == "U1"
    assert event.labels["user_name"] == "bob"
    assert event.conversation is not None
    assert (event.conversation.channel, event.conversation.thread) == (
        CHANNEL,
        "1714999999.000100",
    )
    assert key
    # Slack's retry of the same press is the same command.
    assert (await send(client, body, signed(body, FORM)))[0] == 200
    assert recorder.calls[1][1] == key


async def test_presses_must_be_signed(client: Client, recorder: RecordingSubmit) -> None:
    body = pressed_body(block_action())
    assert (await send(client, body, signed(body, FORM, secret="x" * 32)))[0] == 401
    assert (await send(client, body, {"Content-Type": FORM}))[0] == 401
    assert recorder.calls == []


@pytest.mark.parametrize(
    "document",
    [
        block_action(action_id="someone_elses_button"),
        block_action(value="rm -rf /"),
        block_action(value="ack 0"),
        {**block_action(), "type": "view_submission"},
    ],
)
async def test_other_interactions_are_acknowledged_and_ignored(
    client: Client, recorder: RecordingSubmit, document: dict[str, Any]
) -> None:
    body = pressed_body(document)
    assert await send(client, body, signed(body, FORM)) == (200, "")
    assert recorder.calls == []


@given(
    st.recursive(
        st.none() | st.text() | st.integers(), lambda c: st.lists(c) | st.dictionaries(st.text(), c)
    )
)
def test_reading_a_payload_never_raises(document: Any) -> None:
    found = pressed(document)
    assert isinstance(found, str) or found.command.split()[0] in ("ack", "close")


async def test_buttons_are_posted_as_an_actions_block(fake: FakeSlack, make: Make) -> None:
    job = Job(
        id=1,
        recipient=CHANNEL,
        text="#3 DiskFull: paging <Alice>",
        payload={"thread": "", "buttons": [["Ack", "ack 3"], ["Close", "close 3"]]},
    )
    (outcome,) = await make().deliver([job])
    assert outcome.kind is OutcomeKind.SENT
    (post,) = fake.posts
    assert post["text"] == "#3 DiskFull: paging &lt;Alice&gt;"
    section, actions = post["blocks"]
    assert section["text"]["text"] == post["text"]
    assert [(e["action_id"], e["value"], e.get("style")) for e in actions["elements"]] == [
        ("smsbridge_ack", "ack 3", "primary"),
        ("smsbridge_close", "close 3", "danger"),
    ]


@pytest.fixture
async def daemon(tmp_path: Path, fake: FakeSlack) -> AsyncIterator[Daemon]:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"""
store: {{path: {tmp_path / "outbox.sqlite3"}}}
server: {{listen: "127.0.0.1:0"}}
polling: {{replies: 1h, reports: 1h, balance: 1h}}
dispatch: {{backoff_max: 50ms}}
contacts:
  alice: {{number: "{ALICE}", name: Alice}}
inputs:
  am: {{type: alertmanager, allow_unauthenticated: true}}
  slack:
    type: slack
    signing_secret: ${{SLACK_SIGNING_SECRET}}
    reply_output: slack_out
    commands: {{allow_users: ['*']}}
outputs:
  slack_out: {{type: slack, token: "${{SLACK_BOT_TOKEN}}", api_url: "{fake.url}/api"}}
conversations:
  default: {{output: slack_out, channel: {CHANNEL}}}
oncall:
  policies:
    ops: {{steps: [{{notify: [alice]}}], report_timeout: 1h}}
rules:
  - name: critical
    match: {{kind: alert, labels: {{severity: critical}}}}
    page: {{policy: ops}}
"""
    )
    environ = {"SLACK_SIGNING_SECRET": SECRET, "SLACK_BOT_TOKEN": TOKEN}
    settings = load_settings(path, environ=environ, registry=registry())
    started = Daemon(
        settings, simulator_settings=SimulatorSettings(report_delay=0, rate_limit=None)
    )
    await started.start()
    yield started
    await started.stop()


async def test_pressing_ack_acknowledges_and_tells_alice(daemon: Daemon, fake: FakeSlack) -> None:
    """The alert pages alice and posts the incident's notice with buttons; pressing Ack there
    acknowledges it as `sms ack 1` would: alice is told by SMS, the incident's thread too, and
    the press is answered under the message."""
    assert daemon.simulator is not None
    state = daemon.simulator.state
    assert (await post_json(daemon, "/hooks/am", notification("firing", "f00d")))[0] == 200
    await state.wait_for(has(1))
    await fake.wait_for(1)
    notice = fake.posts[0]
    assert (notice["channel"], notice["text"]) == (CHANNEL, "#1 DiskFull - paging Alice")
    ack = next(e for e in notice["blocks"][1]["elements"] if e["action_id"] == "smsbridge_ack")

    document = block_action(value=ack["value"], message_ts="1715000000.000001")
    body = pressed_body(document)
    async with (
        aiohttp.ClientSession() as http,
        http.post(daemon.url + "/hooks/slack", data=body, headers=signed(body, FORM)) as r,
    ):
        assert r.status == 200
    await daemon.processor.drain()
    assert await incident_state(daemon) == "acknowledged"
    await state.wait_for(has(2))
    assert sent_to(state)[1] == (ALICE, "bob acknowledged #1 DiskFull")
    await fake.wait_for(3)
    # The incident's thread is told; the press is answered under the message pressed.
    told = {(p["channel"], p.get("thread_ts", ""), p["text"]) for p in fake.posts[1:]}
    assert told == {
        (CHANNEL, "", "bob acknowledged #1 DiskFull"),
        (CHANNEL, "1715000000.000001", "acknowledged #1 DiskFull"),
    }
    assert all("blocks" not in post for post in fake.posts[1:])
