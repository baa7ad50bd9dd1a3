"""Feishu buttons: an incident's notice is an interactive card with Ack / Close; a press comes
back as card.action.trigger, encrypted and signed like every other event, and runs `sms ack N`
answered under the card."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from bridge.events import EventKind
from bridge.plugin.base import Job, OutcomeKind
from bridge.plugins.feishu.cards import pressed
from bridge.testing import RecordingSubmit
from tests.plugins.test_feishu import (
    APP_ID,
    CHAT,
    VERIFICATION_TOKEN,
    FakeFeishu,
    Make,
    Serve,
    fake,
    make,
    post,
    sealed,
    serve,
    signed_post,
)

__all__ = ["fake", "make", "serve"]  # fixtures, used by name
CARD = "om_x100b4f3e5c0a2c8c0e3c1b2a9d8e7f60"
PRESS: dict[str, Any] = {
    "schema": "2.0",
    "header": {
        "event_id": "f7984f25108f8137722bb63cee927e66",
        "token": VERIFICATION_TOKEN,
        "create_time": "1764640000000000",
        "event_type": "card.action.trigger",
        "tenant_key": "2df73991750c5a0f",
        "app_id": APP_ID,
    },
    "event": {
        "operator": {
            "tenant_key": "2df73991750c5a0f",
            "user_id": "867e5c6e",
            "open_id": "ou_3c50e1f8c1f3b7e4d5a6b7c8d9e0f1a2",
            "union_id": "on_cad4860e7af114fb4ff6c5d496d1dd76",
        },
        "token": "c-295ee57216a5dc9de90fefd0aadb4b1d7d337bc5",
        "action": {"value": {"smsbridge": "ack 3"}, "tag": "button"},
        "host": "im_message",
        "context": {"open_message_id": CARD, "open_chat_id": CHAT},
    },
}


def press(value: Any = "ack 3", event_id: str = "e1") -> dict[str, Any]:
    document = copy.deepcopy(PRESS)
    document["header"]["event_id"] = event_id
    document["event"]["action"]["value"] = {"smsbridge": value}
    return document


async def test_a_pressed_button_is_its_command_under_the_card(
    serve: Serve, recorder: RecordingSubmit
) -> None:
    client = await serve()
    status, answer = await signed_post(client, press())
    assert status == 200
    assert answer == {"toast": {"type": "info", "content": "sms ack 3: the answer follows"}}
    ((event,), key, _) = recorder.calls[0]
    assert (event.kind, event.text) == (EventKind.COMMAND, "ack 3")
    assert event.labels["user"] == PRESS["event"]["operator"]["open_id"]
    assert event.labels["user_name"] == "867e5c6e"
    assert event.conversation is not None
    assert (event.conversation.channel, event.conversation.thread) == (CHAT, CARD)
    assert "token" not in str(event.data)
    # Feishu's redelivery of the same press is the same command.
    await signed_post(client, press())
    assert recorder.calls[1][1] == key


async def test_presses_must_be_sealed_and_signed(serve: Serve, recorder: RecordingSubmit) -> None:
    client = await serve()
    body = sealed(press())
    assert (await post(client, body, None))[0] == 401  # unsigned
    assert (await post(client, sealed(press(), key="another-key"), None))[0] == 401
    forged = copy.deepcopy(press())
    forged["header"]["token"] = "not-the-token"
    assert (await signed_post(client, forged))[0] == 401
    assert recorder.calls == []


async def test_other_card_actions_are_acknowledged_and_ignored(
    serve: Serve, recorder: RecordingSubmit
) -> None:
    client = await serve()
    for index, value in enumerate(["drop table", "ack", {"nested": 1}, "close 12345678901"]):
        status, answer = await signed_post(client, press(value, event_id=f"x{index}"))
        assert (status, answer) == (200, {"toast": {"type": "info", "content": "ignored"}})
    assert all(events == [] for events, _, _ in recorder.calls)


@given(
    st.recursive(
        st.none() | st.text() | st.integers(),
        lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    )
)
def test_reading_a_press_never_raises(document: Any) -> None:
    found = pressed(document)
    assert isinstance(found, str) or found.command.split()[0] in ("ack", "close")


async def test_buttons_are_posted_as_an_interactive_card(fake: FakeFeishu, make: Make) -> None:
    job = Job(
        id=1,
        recipient=CHAT,
        text="#3 DiskFull: paging Alice",
        payload={"thread": "", "buttons": [["Ack", "ack 3"], ["Close", "close 3"]]},
    )
    (outcome,) = await make().deliver([job])
    assert outcome.kind is OutcomeKind.SENT
    (sent,) = fake.posts
    assert (sent["kind"], sent["to"], sent["msg_type"]) == ("create", CHAT, "interactive")
    text, actions = sent["card"]["elements"]
    assert text["text"] == {"tag": "plain_text", "content": "#3 DiskFull: paging Alice"}
    assert [(a["text"]["content"], a["value"], a["type"]) for a in actions["actions"]] == [
        ("Ack", {"smsbridge": "ack 3"}, "primary"),
        ("Close", {"smsbridge": "close 3"}, "danger"),
    ]
