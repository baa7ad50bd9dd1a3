"""Text hygiene: untrusted text made sendable (SMS, chat) and safe to print on a terminal."""

from __future__ import annotations

import re

REPLACEMENT = "\ufffd"

# ANSI escape sequences (ECMA-48), 7-bit and 8-bit forms: CSI (`ESC [ 31 m`) and OSC strings
# (`ESC ] 0 ; title BEL`). An OSC body stops at the next introducer, so a text full of
# unterminated ones costs linear time, and its ESC is then replaced like any other control.
_ANSI = re.compile(
    r"(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]"
    r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c\x9d]*(?:\x07|\x1b\\|\x9c)"
)
# C0 and C1 controls, DEL, and the bidi overrides and isolates that reorder what a reader sees
# (the "Trojan Source" set). A newline is a C0 control too: see clean().
_C0 = "\x00-\x1f"
_C0_BUT_NEWLINE = "\x00-\x09\x0b-\x1f"
_OTHER_CONTROLS = "\x7f-\x9f\u202a-\u202e\u2066-\u2069"
# Lone surrogates cannot be encoded at all; U+FFFE and U+FFFF are not characters, and XML (so
# the gateway) carries neither.
_NOT_CHARACTERS = "\ud800-\udfff\ufffe\uffff"

_CONTROL_RUN = re.compile(f"[{_C0}{_OTHER_CONTROLS}]+")
_CONTROL_RUN_BUT_NEWLINE = re.compile(f"[{_C0_BUT_NEWLINE}{_OTHER_CONTROLS}]+")
_LINE_BREAK = re.compile("\r\n?")
_NOT_CHARACTER = re.compile(f"[{_NOT_CHARACTERS}]")
# Whatever clean() changes starts with one of these (an escape sequence with ESC or a C1
# control): most texts hold none, and one search is all they cost.
_TO_CLEAN = re.compile(f"[{_C0}{_OTHER_CONTROLS}{_NOT_CHARACTERS}]")
_TO_CLEAN_BUT_NEWLINE = re.compile(f"[{_C0_BUT_NEWLINE}{_OTHER_CONTROLS}{_NOT_CHARACTERS}]")

# What a terminal must never receive raw: controls (tab and newline too: a value in a listing
# stays on its line), bidi controls, line and paragraph separators, and lone surrogates.
_UNPRINTABLE_BUT_C0 = f"{_OTHER_CONTROLS}\u2028\u2029\ud800-\udfff"
_UNPRINTABLE = re.compile(f"[{_C0}{_UNPRINTABLE_BUT_C0}]")
# json.dumps escapes C0 controls itself (the newlines left are its indentation).
_UNPRINTABLE_IN_JSON = re.compile(f"[{_UNPRINTABLE_BUT_C0}]")
_SHORT_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def clean(text: str, *, keep_newlines: bool = False) -> str:
    """A text every output can carry: ANSI escape sequences dropped, each run of control or
    bidi characters made one space, lone surrogates and non-characters made U+FFFD.

    Newlines become a space too unless `keep_newlines` (chat texts, where a line break is
    formatting; in an SMS it could fake a separate line of instructions). Never longer than
    `text`, so a length limit checked before still holds.
    """
    if (_TO_CLEAN_BUT_NEWLINE if keep_newlines else _TO_CLEAN).search(text) is None:
        return text
    text = _NOT_CHARACTER.sub(REPLACEMENT, _ANSI.sub("", text))
    if keep_newlines:
        return _CONTROL_RUN_BUT_NEWLINE.sub(" ", _LINE_BREAK.sub("\n", text))
    return _CONTROL_RUN.sub(" ", text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    short = _SHORT_ESCAPES.get(char)
    if short is not None:
        return short
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def terminal_safe(text: str) -> str:
    """A text to print on a terminal: control, bidi and separator characters shown escaped
    (`\\x1b`, `\\u202e`, `\\n`), never emitted raw; everything else as it is."""
    return _UNPRINTABLE.sub(_escape, text)


def terminal_safe_json(document: str) -> str:
    """A JSON text (from json.dumps without ensure_ascii) safe to print: what json.dumps leaves
    raw and a terminal must not get is written as `\\u` escapes, so the value stays the same."""
    return _UNPRINTABLE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", document)
