"""Feishu cards: our incident buttons (Ack / Close) as an interactive card, and a press
(`card.action.trigger`) read back as the `sms` command it stands for."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bridge.plugin import Button, button_command

CARD_ACTION_EVENT = "card.action.trigger"
VALUE_KEY = "smsbridge"  # the button's value: {"smsbridge": "ack 3"}
STYLES = {"Ack": "primary", "Close": "danger"}


def card(text: str, buttons: Sequence[Button]) -> dict[str, Any]:
    """The card: the text as plain text (nothing in an SMS can turn into markup), the buttons
    in an action module under it."""
    return {
        "config": {"wide_screen_mode": True},
        "elements": [
            {"tag": "div", "text": {"tag": "plain_text", "content": text}},
            {
                "tag": "action",
                "actions": [
                    {
                        "tag": "button",
                        "text": {"tag": "plain_text", "content": button.label},
                        "type": STYLES.get(button.label, "default"),
                        "value": {VALUE_KEY: button.command},
                    }
                    for button in buttons
                ],
            },
        ],
    }


@dataclass(frozen=True, slots=True)
class Pressed:
    """One of our buttons, pressed: who, where, and the command it runs."""

    command: str  # `ack 3`
    user_id: str  # open_id
    user_name: str  # user_id (the employee id) when the app may see it, else open_id
    chat: str
    message: str  # the card's message: answers are replies to it


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(document: dict[str, Any], key: str) -> str:
    value = document.get(key)
    return value if isinstance(value, str) else ""


def pressed(event: Any) -> Pressed | str:
    """The button a card.action.trigger `event` (schema 2.0) reports, or why none of ours."""
    document = _dict(event)
    action = _dict(document.get("action"))
    command = button_command(_text(_dict(action.get("value")), VALUE_KEY))
    if command is None:
        return "not our button"
    operator, context = _dict(document.get("operator")), _dict(document.get("context"))
    open_id = _text(operator, "open_id")
    chat, message = _text(context, "open_chat_id"), _text(context, "open_message_id")
    if not (open_id and chat and message):
        return "lacks operator, chat or message"
    return Pressed(command, open_id, _text(operator, "user_id") or open_id, chat, message)
