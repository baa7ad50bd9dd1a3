"""Text hygiene: cleaned texts carry no control characters, terminal texts show them escaped."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.plugins.c123.validation import is_xml_text
from bridge.text import clean, terminal_safe, terminal_safe_json

# What may never be left in a cleaned text (newline aside when kept), nor printed raw.
CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029\ud800-\udfff]")
HOSTILE = [
    "\x1b[31m",
    "\x1b[0m",
    "\x1b[2J",
    "\x1b]0;pwned\x07",
    "\x1b]8;;http://x\x1b\\",
    "\x9b1;31m",
    "\x9d0;t\x9c",
    "\x1b",
    "\x1b]",
    "\x9d",
    "\x00",
    "\x07",
    "\x7f",
    "\x85",
    "\u202e",
    "\u2066",
    "\ud800",
    "\udfff",
    "\ufffe",
    "\uffff",
    "\r\n",
    "\r",
    "\n",
    "\t",
]
# Any text at all, lone surrogates included, with the hostile pieces mixed in often.
any_text = st.lists(
    st.sampled_from(HOSTILE)
    | st.text(st.characters(codec=None, exclude_categories=()), max_size=6),
    max_size=12,
).map("".join)


@pytest.mark.parametrize(
    ("raw", "sms", "chat"),
    [
        ("\x1b[31mDiskFull\x1b[0m db1", "DiskFull db1", "DiskFull db1"),
        ("a\x1b]0;title\x07b", "ab", "ab"),
        ("a\x1bb", "a b", "a b"),
        ("a\x00\x07\x7f\x85b", "a b", "a b"),
        ("user \u202eexe.txt", "user  exe.txt", "user  exe.txt"),
        ("disk\r\nfull\nnow", "disk full now", "disk\nfull\nnow"),
        ("tab\there", "tab here", "tab here"),
        ("x\ud800y\uffff", "x\ufffdy\ufffd", "x\ufffdy\ufffd"),
        ("磁盘满了 🔥", "磁盘满了 🔥", "磁盘满了 🔥"),
    ],
)
def test_clean(raw: str, sms: str, chat: str) -> None:
    """Escape sequences go, controls become one space, newlines stay only in chat texts."""
    assert clean(raw) == sms
    assert clean(raw, keep_newlines=True) == chat


@given(any_text, st.booleans())
def test_a_cleaned_text_is_sendable_and_never_longer(text: str, keep_newlines: bool) -> None:
    """Whatever came in, the result is XML text without controls, and no longer than before."""
    cleaned = clean(text, keep_newlines=keep_newlines)
    assert is_xml_text(cleaned)
    assert not CONTROLS.search(cleaned.replace("\n", "") if keep_newlines else cleaned)
    assert "\x1b" not in cleaned
    assert len(cleaned) <= len(text)
    cleaned.encode("utf-8")  # no lone surrogate left: this raises if there is one
    assert clean(cleaned, keep_newlines=keep_newlines) == cleaned


def test_unterminated_sequences_cost_linear_time() -> None:
    """Long runs of unterminated introducers are cleaned at once, not in quadratic time."""
    count = 200_000
    assert clean("\x9d" * count) == " "
    assert clean("\x1b]" * count) == " ]" * count
    assert clean("\x1b[" + "0" * count) == " [" + "0" * count


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[31mred", "\\x1b[31mred"),
        ("line\nnext\tcol\r", "line\\nnext\\tcol\\r"),
        ("\x9b2J\x7f", "\\x9b2J\\x7f"),
        ("\u202eabc\u2066", "\\u202eabc\\u2066"),
        ("\u2028\ud800", "\\u2028\\ud800"),
        ("中文　emoji 🔥 café", "中文　emoji 🔥 café"),
    ],
)
def test_terminal_safe(raw: str, shown: str) -> None:
    """Controls are shown as escapes a person can read; ordinary text is left alone."""
    assert terminal_safe(raw) == shown


@given(any_text)
def test_terminal_safe_never_emits_a_control(text: str) -> None:
    """Nothing unprintable survives, and the result can be written to any UTF-8 stream."""
    shown = terminal_safe(text)
    assert not UNPRINTABLE.search(shown)
    shown.encode("utf-8")


@given(
    st.recursive(
        any_text,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
        max_leaves=8,
    )
)
def test_terminal_safe_json_keeps_the_value(value: object) -> None:
    """A JSON document made safe to print parses to the value plain json.dumps gives back."""
    document = terminal_safe_json(json.dumps(value, ensure_ascii=False, indent=2))
    assert not UNPRINTABLE.search(document.replace("\n", ""))
    # (JSON itself joins a lone high and a lone low surrogate, escaped or not, into one.)
    assert json.loads(document) == json.loads(json.dumps(value))
