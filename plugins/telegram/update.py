"""Telegram updates: which messages are `sms` commands, and who wrote them where."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, TypeGuard

# "/sms", "/sms@SomeBot", then the end or whitespace; "/smsx" is another command.
_SLASH = re.compile(r"/sms(?:@(?P<bot>[A-Za-z0-9_]+))?(?=\s|$)", re.IGNORECASE)
# "sms" as the first word of a plain text.
_WORD = re.compile(r"sms(?=\s|$)", re.IGNORECASE)


def command_text(text: str, bot_username: str | None = None) -> str | None:
    """What follows `/sms`, `/sms@Bot` or `sms` at the start of `text`; None if not a command.

    With `bot_username`, a command addressed to another bot (`/sms@OtherBot`) is not ours.
    """
    body = text.lstrip()
    if slash := _SLASH.match(body):
        bot = slash.group("bot")
        if bot and bot_username and bot.casefold() != bot_username.casefold():
            return None
        return body[slash.end() :].strip()
    if word := _WORD.match(body):
        return body[word.end() :].strip()
    return None


def thread_ref(message_id: int, topic: int | None) -> str:
    """The thread an answer goes to: the command's message, inside its forum topic if any."""
    return f"{topic}/{message_id}" if topic is not None else str(message_id)


def parse_thread(thread: str) -> tuple[int | None, int | None]:
    """(topic, message id) from thread_ref's text; (None, None) parts where absent or invalid."""
    topic, _, message = thread.rpartition("/")
    return _integer(topic), _integer(message)


def _integer(text: str) -> int | None:
    # int() also takes "+5", " 5" and "5_0"; a thread is only ever written by thread_ref.
    return int(text) if text.isascii() and text.isdigit() else None


def _is_int(value: object) -> TypeGuard[int]:
    # JSON true is a Python int too; an id never is.
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class Command:
    """An `sms` command found in an update, with where to answer it."""

    text: str  # what follows the keyword
    user_id: str
    user_name: str
    chat_id: str
    thread: str


def find_command(update: dict[str, Any], bot_username: str | None) -> Command | str:
    """The update's command, or why it is not one (a short reason for the log)."""
    message = update.get("message")
    if not isinstance(message, dict):
        # edited_message, channel_post, callback_query...: an edit must not send an SMS again.
        kinds = sorted(key for key in update if key != "update_id")
        return f"not a message ({', '.join(kinds)[:60] or 'empty'})"
    sender = message.get("from")
    if not isinstance(sender, dict) or not _is_int(sender.get("id")):
        return "no sender"
    if sender.get("is_bot") is True:
        # Bots (this one included, and anonymous admins posting as GroupAnonymousBot) never
        # command; this also stops two bridges answering each other in a loop.
        return "from a bot"
    text = message.get("text")
    if not isinstance(text, str):
        return "no text"
    found = command_text(text, bot_username)
    if found is None:
        return "not an sms command"
    chat = message.get("chat")
    message_id = message.get("message_id")
    if not isinstance(chat, dict) or not _is_int(chat.get("id")):
        return "no chat"
    if not _is_int(message_id):
        return "no message_id"
    topic = message.get("message_thread_id")
    in_topic = message.get("is_topic_message") is True and _is_int(topic)
    username = sender.get("username")
    user_id = str(sender["id"])
    return Command(
        text=found,
        user_id=user_id,
        # Only the unique @username may stand for a person: a display name can be copied.
        user_name=username if isinstance(username, str) and username else user_id,
        chat_id=str(chat["id"]),
        thread=thread_ref(message_id, topic if in_topic else None),
    )
