"""Reply commands: `1a`, `a1`, `ack`, `ack all`, `ack 2h`, 确认 / 关闭 / 升级 / 收到, read whole."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from pydantic_core import PydanticCustomError

from bridge.config import parse_duration

DEFAULT_ACK_MAX = timedelta(hours=24)
MAX_CODE = 9999


class Action(StrEnum):
    """What a reply asks for."""

    ACK = "ack"
    CLOSE = "close"
    ESCALATE = "escalate"


@dataclass(frozen=True, slots=True)
class Command:
    """A reply that acts on pages.

    `code` picks the page by its per-number code; without it the command is for the newest page
    to the number, or for every open one when `all` is set. `silence` (acknowledgements only)
    also silences the alert for that long, already capped.
    """

    action: Action
    code: int | None = None
    all: bool = False
    silence: timedelta | None = None

    def __str__(self) -> str:
        """The canonical reply for this command, which parse_reply reads back."""
        text = f"{self.code}{self.action.value[0]}" if self.code else self.action.value
        if self.all:
            text += " all"
        if self.silence is not None:
            text += " " + _duration_text(self.silence)
        return text


_LETTERS = {"a": Action.ACK, "c": Action.CLOSE, "e": Action.ESCALATE}
_WORDS = {
    "ack": Action.ACK,
    "acknowledge": Action.ACK,
    "确认": Action.ACK,
    "收到": Action.ACK,
    "close": Action.CLOSE,
    "关闭": Action.CLOSE,
    "escalate": Action.ESCALATE,
    "升级": Action.ESCALATE,
}
# Longest first, so that `acknowledge` is not read as `ack` and a rest.
_WORD = "|".join(sorted(map(re.escape, _WORDS), key=len, reverse=True))
_ALL = r"(?:all|全部)"
_CODE = r"[1-9]\d{0,3}"
_UNITS = {
    "m": "m",
    "min": "m",
    "mins": "m",
    "minute": "m",
    "minutes": "m",
    "分": "m",
    "分钟": "m",
    "h": "h",
    "hr": "h",
    "hrs": "h",
    "hour": "h",
    "hours": "h",
    "小时": "h",
    "个小时": "h",
    "d": "d",
    "day": "d",
    "days": "d",
    "天": "d",
}
_UNIT = "|".join(sorted(map(re.escape, _UNITS), key=len, reverse=True))
_PART = re.compile(rf"(\d+(?:\.\d+)?) ?({_UNIT})")
_DURATION = rf"(?:\d+(?:\.\d+)? ?(?:{_UNIT}))+"
# A code must be followed by a space (or the end) before a duration: `a1 2h`, never `a12h`.
_FORMS = [
    re.compile(rf"(?P<code>{_CODE}) ?(?P<letter>[ace])(?: (?P<silence>{_DURATION}))?"),
    re.compile(rf"(?P<letter>[ace]) ?(?P<code>{_CODE})(?: (?P<silence>{_DURATION}))?"),
    re.compile(rf"(?P<word>{_WORD}) ?(?P<code>{_CODE})(?: (?P<silence>{_DURATION}))?"),
    re.compile(rf"(?P<code>{_CODE}) ?(?P<word>{_WORD})(?: ?(?P<silence>{_DURATION}))?"),
    re.compile(rf"(?P<word>{_WORD})(?: ?(?P<all>{_ALL}))?(?: ?(?P<silence>{_DURATION}))?"),
    re.compile(rf"(?P<all>{_ALL}) ?(?P<word>{_WORD})(?: ?(?P<silence>{_DURATION}))?"),
]
_CATEGORIES_AROUND = ("P", "S", "Z", "C")  # punctuation, symbols, separators, controls
_SEPARATOR = re.compile(r"[\s,;:!?、，。；：！？]+")


# What a near miss looks like: a short code-like token (`1x`, `a 1`) or a command word begun
# (`akc`, `esc`, `确定`), with at most two more words. Ordinary messages ("on it, disk is full")
# are forwarded without an answer: a help SMS to them would only be noise on someone's phone.
_ATTEMPT = re.compile(r"(?:\w{0,2}\d\w{0,2}|ac|ak|clo|esc|确|关|升|收|all)\S*(?: \S+){0,2}")
ATTEMPT_MAX = 20  # characters, normalised: longer is a message, not a mistyped command


def looks_like_command(text: str) -> bool:
    """Whether a reply that is no command looks like a mistyped one (worth a help answer)."""
    normal = normalize_reply(text)
    return len(normal) <= ATTEMPT_MAX and _ATTEMPT.fullmatch(normal) is not None


def _duration_text(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds // 60}m"


def _is_around(char: str) -> bool:
    return unicodedata.category(char).startswith(_CATEGORIES_AROUND)


def normalize_reply(text: str) -> str:
    """Fold a reply to the form commands are read in: NFKC (`１ａ` is `1a`), lower case, no
    punctuation or space around it, and single spaces where words were separated."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    start, end = 0, len(folded)
    while start < end and _is_around(folded[start]):
        start += 1
    while end > start and _is_around(folded[end - 1]):
        end -= 1
    return _SEPARATOR.sub(" ", folded[start:end])


def _silence(text: str, ack_max: timedelta) -> timedelta | None:
    canonical = "".join(amount + _UNITS[unit] for amount, unit in _PART.findall(text))
    try:
        minutes = parse_duration(canonical) // timedelta(minutes=1)  # whole minutes, as written
    except PydanticCustomError:
        return ack_max  # too long for a timedelta: longer than any cap
    return min(timedelta(minutes=minutes), ack_max) if minutes else None


def parse_reply(text: str, *, ack_max: timedelta = DEFAULT_ACK_MAX) -> Command | None:
    """The command a whole reply asks for, or None when it is anything else.

    Silences under a minute are no command (a slip, not a wish); longer ones are cut to ack_max.
    """
    normal = normalize_reply(text)
    for form in _FORMS:
        found = form.fullmatch(normal)
        if found is None:
            continue
        parts = found.groupdict()
        action = _LETTERS[parts["letter"]] if parts.get("letter") else _WORDS[parts["word"]]
        silence = None
        if parts.get("silence"):
            if action is not Action.ACK:
                return None
            silence = _silence(parts["silence"], ack_max)
            if silence is None:
                return None
        every = bool(parts.get("all"))
        if every and action is not Action.ACK:
            return None  # closing or escalating everything by one SMS is too blunt a tool
        code = int(parts["code"]) if parts.get("code") else None
        return Command(action, code, every, silence)
    return None
