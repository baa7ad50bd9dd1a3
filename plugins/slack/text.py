"""Slack's message text: `sms …` commands found in it, its markup decoded, and ours escaped."""

from __future__ import annotations

import re
from collections.abc import Collection

# <@U123>, <@U123|name>, <#C123|general>, <!here>, <!subteam^S1|@ops>, <https://x|label>, <mailto:a>
_ANGLE = re.compile(r"<([^<>]*)>")
_LEADING_MENTION = re.compile(r"\s*<@([A-Z0-9]+)(?:\|[^<>]*)?>[\s,:]*")


def _plain(match: re.Match[str]) -> str:
    target, _, label = match.group(1).partition("|")
    if target.startswith(("@", "#")):
        return target[0] + (label.lstrip("@#") or target[1:])
    if target.startswith("!"):
        return "@" + (label.lstrip("@") or target[1:].split("^", 1)[0])
    if label:
        return label
    for scheme in ("mailto:", "tel:"):
        if target.startswith(scheme):
            return target[len(scheme) :]
    return target


def decode(text: str) -> str:
    """Text as the user typed it: links and mentions as their labels, &amp; &lt; &gt; undone."""
    text = _ANGLE.sub(_plain, text)
    # &amp; last, so a typed "&lt;" (sent as "&amp;lt;") stays "&lt;".
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def escape(text: str) -> str:
    """Text Slack shows literally: an SMS saying <!channel> must not notify the channel."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def command_text(
    text: str, keyword: str, *, bots: Collection[str] = (), any_mention: bool = False
) -> str | None:
    """What follows the keyword in `[<@bot>] sms …`, decoded; None when it is no command.

    A leading mention is skipped when it names one of `bots` (or any user, with `any_mention`,
    for app_mention events, which Slack sends only when the bot was mentioned).
    """
    mention = _LEADING_MENTION.match(text)
    if mention and (any_mention or mention.group(1) in bots):
        text = text[mention.end() :]
    text = decode(text).lstrip()
    if text[: len(keyword)].casefold() != keyword.casefold():
        return None
    rest = text[len(keyword) :]
    if rest and not rest[0].isspace():
        return None  # "smsbot …" or "sms-team" is not the sms command
    return rest.strip()
