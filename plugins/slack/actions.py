"""Slack block actions: our incident buttons (Ack / Close) as the blocks that carry them, and a
pressed button's interaction payload read back as the `sms` command it stands for."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bridge.plugin import Button, button_command

ACTION_PREFIX = "smsbridge_"  # action_id of our buttons: `smsbridge_ack`, `smsbridge_close`
STYLES = {"Ack": "primary", "Close": "danger"}


def blocks(text: str, buttons: Sequence[Button]) -> list[dict[str, Any]]:
    """The (escaped) text in a section block, the buttons in an actions block under it."""
    elements = [
        {
            "type": "button",
            "action_id": f"{ACTION_PREFIX}{button.command.split()[0]}",
            "text": {"type": "plain_text", "text": button.label},
            "value": button.command,
            **({"style": STYLES[button.label]} if button.label in STYLES else {}),
        }
        for button in buttons
    ]
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {"type": "actions", "elements": elements},
    ]


@dataclass(frozen=True, slots=True)
class Pressed:
    """One of our buttons, pressed: who, where, and the command it runs."""

    command: str  # `ack 3`
    user_id: str
    user_name: str
    channel: str
    thread: str  # the thread of the message the button is under (its own ts if none)
    trigger_id: str


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(document: dict[str, Any], key: str) -> str:
    value = document.get(key)
    return value if isinstance(value, str) else ""


def pressed(payload: Any) -> Pressed | str:
    """The button a `block_actions` payload reports, or why it reports none of ours."""
    document = _dict(payload)
    if document.get("type") != "block_actions":
        return "not a block action"
    actions = document.get("actions")
    ours = [
        action
        for action in (actions if isinstance(actions, list) else [])
        if _text(_dict(action), "action_id").startswith(ACTION_PREFIX)
    ]
    if not ours:
        return "not our button"
    command = button_command(_text(_dict(ours[0]), "value"))
    if command is None:
        return "not a button command"
    user, container = _dict(document.get("user")), _dict(document.get("container"))
    message = _dict(document.get("message"))
    channel = _text(_dict(document.get("channel")), "id") or _text(container, "channel_id")
    message_ts = _text(container, "message_ts") or _text(message, "ts")
    thread = _text(container, "thread_ts") or _text(message, "thread_ts") or message_ts
    user_id = _text(user, "id")
    if not (user_id and channel and thread):
        return "lacks user, channel or message"
    return Pressed(
        command=command,
        user_id=user_id,
        user_name=_text(user, "username") or _text(user, "name") or user_id,
        channel=channel,
        thread=thread,
        trigger_id=_text(document, "trigger_id"),
    )
