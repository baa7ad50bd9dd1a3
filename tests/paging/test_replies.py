"""Reply commands: codes, bare words, Chinese keywords, silences, and whole-reply matching."""

from __future__ import annotations

import unicodedata
from datetime import timedelta

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bridge.paging import Action, Command, looks_like_command, normalize_reply, parse_reply

ACK, CLOSE, ESCALATE = Action.ACK, Action.CLOSE, Action.ESCALATE


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("1a", Command(ACK, 1)),
        ("a1", Command(ACK, 1)),
        ("1c", Command(CLOSE, 1)),
        ("c12", Command(CLOSE, 12)),
        ("1e", Command(ESCALATE, 1)),
        ("1 A", Command(ACK, 1)),
        ("１ａ", Command(ACK, 1)),
        ("  1A.  ", Command(ACK, 1)),
        ("ack", Command(ACK)),
        ("ACK!", Command(ACK)),
        ("close", Command(CLOSE)),
        ("escalate", Command(ESCALATE)),
        ("acknowledge", Command(ACK)),
        ("ack all", Command(ACK, all=True)),
        ("Ack All.", Command(ACK, all=True)),
        ("ack 3", Command(ACK, 3)),
        ("3 close", Command(CLOSE, 3)),
        ("确认", Command(ACK)),
        ("收到", Command(ACK)),
        ("收到！", Command(ACK)),
        ("「确认」", Command(ACK)),
        ("关闭", Command(CLOSE)),
        ("升级", Command(ESCALATE)),
        ("确认2", Command(ACK, 2)),
        ("2 关闭", Command(CLOSE, 2)),
        ("全部确认", Command(ACK, all=True)),
        ("确认全部", Command(ACK, all=True)),
        ("ack 2h", Command(ACK, silence=timedelta(hours=2))),
        ("ack 90m", Command(ACK, silence=timedelta(minutes=90))),
        ("ack 1h30m", Command(ACK, silence=timedelta(minutes=90))),
        ("ack 1.5 hours", Command(ACK, silence=timedelta(minutes=90))),
        ("1a 2h", Command(ACK, 1, silence=timedelta(hours=2))),
        ("a1 2h", Command(ACK, 1, silence=timedelta(hours=2))),
        ("确认 2小时", Command(ACK, silence=timedelta(hours=2))),
        ("确认30分钟", Command(ACK, silence=timedelta(minutes=30))),
        ("ack all 1d", Command(ACK, all=True, silence=timedelta(days=1))),
        ("ack 3d", Command(ACK, silence=timedelta(hours=24))),  # capped by ack_max
        ("ack 99999999999999d", Command(ACK, silence=timedelta(hours=24))),
    ],
)
def test_commands(text: str, command: Command) -> None:
    assert parse_reply(text) == command


@pytest.mark.parametrize(
    "text",
    [
        "",
        "a",
        "c",
        "ok",
        "thanks",
        "please ack",
        "ack thanks",
        "1a thanks",
        "I will ack 1a",
        "我确认了",
        "已收到，马上处理",
        "0a",
        "1x",
        "a12h",  # a code must be followed by a space before a silence
        "close 2h",  # only an acknowledgement silences
        "1e 2h",
        "close all",  # too blunt by SMS
        "ack 0m",
        "ack 30s",
        "ack ack",
        "12345a",
        "1a1c",
    ],
)
def test_not_commands(text: str) -> None:
    assert parse_reply(text) is None


def test_ack_max_caps_the_silence() -> None:
    assert parse_reply("ack 8h", ack_max=timedelta(hours=4)) == Command(
        ACK, silence=timedelta(hours=4)
    )


def test_a_bare_number_after_a_word_is_a_code() -> None:
    """`ack 2` is code 2: silences always carry a unit."""
    assert parse_reply("ack 2") == Command(ACK, 2)


# --- properties ------------------------------------------------------------------------------

codes = st.integers(1, 9999)
silences = st.integers(1, 24 * 60).map(lambda minutes: timedelta(minutes=minutes))


@st.composite
def commands(draw: st.DrawFn) -> Command:
    action = draw(st.sampled_from(list(Action)))
    if action is not ACK:
        return Command(action, draw(st.none() | codes))
    shape = draw(st.sampled_from(["code", "newest", "all"]))
    silence = draw(st.none() | silences)
    if shape == "code":
        return Command(ACK, draw(codes), silence=silence)
    return Command(ACK, all=shape == "all", silence=silence)


WORDS = {
    ACK: ["ack", "acknowledge", "确认", "收到"],
    CLOSE: ["close", "关闭"],
    ESCALATE: ["escalate", "升级"],
}
UNITS = {
    "m": ["m", "min", "minutes", "分钟"],
    "h": ["h", "hours", "hr", "小时"],
    "d": ["d", "days", "天"],
}


@st.composite
def spellings(draw: st.DrawFn, command: Command) -> str:
    """One of the many ways a person may write `command`."""
    word = draw(st.sampled_from(WORDS[command.action]))
    space = draw(st.sampled_from(["", " "]))
    if command.code is not None:
        letter = command.action.value[0]
        text = draw(
            st.sampled_from(
                [
                    f"{command.code}{space}{letter}",
                    f"{letter}{space}{command.code}",
                    f"{word}{space}{command.code}",
                    f"{command.code}{space}{word}",
                ]
            )
        )
    elif command.all:
        text = draw(st.sampled_from([f"{word} all", f"{word}{space}全部", f"全部{space}{word}"]))
    else:
        text = word
    if command.silence is not None:
        minutes = int(command.silence.total_seconds()) // 60
        for unit, size in (("d", 1440), ("h", 60), ("m", 1)):
            if minutes % size == 0:
                text += f" {minutes // size}{space}{draw(st.sampled_from(UNITS[unit]))}"
                break
    return text


def full_width(text: str) -> str:
    return "".join(
        chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else "\u3000" if c == " " else c for c in text
    )


@st.composite
def disguises(draw: st.DrawFn, text: str) -> str:
    """The same reply with case, width and the punctuation and space around it changed."""
    text = "".join(c.upper() if draw(st.booleans()) else c for c in text)
    if draw(st.booleans()):
        text = full_width(text)
    around = st.text(st.sampled_from(" \t\n.,!?。！？…~「」\"'()（）👍"), max_size=4)
    return draw(around) + text + draw(around)


@settings(max_examples=400, deadline=None)
@given(commands(), st.data())
def test_round_trip(command: Command, data: st.DataObject) -> None:
    """Every way of writing a command, and its canonical text, parse back to it."""
    assert parse_reply(str(command)) == command
    assert parse_reply(data.draw(spellings(command))) == command


@settings(max_examples=400, deadline=None)
@given(commands(), st.data())
def test_normalisation_invariance(command: Command, data: st.DataObject) -> None:
    """Case, full-width characters and surrounding punctuation or space change nothing."""
    text = data.draw(spellings(command))
    assert parse_reply(data.draw(disguises(text))) == parse_reply(text) == command


# Words made of letters that appear in no keyword, unit or code: they can never be part of one.
other_words = st.one_of(
    st.text(st.sampled_from("bfjpqvxz"), min_size=1, max_size=8),
    st.sampled_from(["好的", "谢谢", "马上处理", "稍后", "在路上", "了"]),
)


@settings(max_examples=400, deadline=None)
@given(
    commands(), other_words, st.sampled_from(["{w} {c}", "{c} {w}", "{c}{w}", "{w}{c}"]), st.data()
)
def test_other_words_make_it_no_command(
    command: Command, word: str, layout: str, data: st.DataObject
) -> None:
    """A reply with anything more than a command in it is a message, not a command."""
    text = layout.format(w=word, c=data.draw(spellings(command)))
    assert parse_reply(text) is None


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=30))
def test_any_text_parses_or_not_without_error(text: str) -> None:
    """Any reply either is no command, or one whose canonical text means the same."""
    command = parse_reply(text)
    if command is not None:
        assert parse_reply(str(command)) == command


@given(st.text(max_size=20))
def test_normalising_twice_changes_nothing(text: str) -> None:
    once = normalize_reply(text)
    assume(unicodedata.is_normalized("NFKC", once))
    assert normalize_reply(once) == once


@pytest.mark.parametrize(
    "text", ["1x", "0a", "12345a", "akc", "esclate", "确定", "ack ack", "1 a b"]
)
def test_near_misses_look_like_commands(text: str) -> None:
    """Mistyped commands (worth one help answer) are told apart from messages."""
    assert parse_reply(text) is None
    assert looks_like_command(text)


@pytest.mark.parametrize(
    "text", ["on it, disk is full", "thanks", "好的", "马上处理", "who is this?", "ack" + " x" * 20]
)
def test_messages_do_not_look_like_commands(text: str) -> None:
    assert not looks_like_command(text)


@given(commands())
def test_commands_look_like_commands(command: Command) -> None:
    """Whatever parses as a command is also what a near miss looks like (one notion, not two)."""
    assert looks_like_command(str(command))


@given(st.lists(other_words, min_size=1, max_size=4))
def test_other_words_never_look_like_commands(words: list[str]) -> None:
    assert not looks_like_command(" ".join(words))
